"""The overhead per task of the durable plan (``cf.map``) and of ``cf.submit`` + ``results()``.

    python bench/durable_plan.py                            # N = 100, 1000, 10000; 5 runs each
    python bench/durable_plan.py --n 1000 --repeat 3 --json out.json
    python bench/durable_plan.py --one plan 1000            # one measurement, printed as JSON

The task is ``abs`` (it costs nothing), so the wall time is all overhead. Runners:

  plan       with cf.plan(cf.durable_jobs(f"local://{tmp}/b", workers=2)):
                 cf.map(abs, range(N))
  submit     job = cf.submit(abs, range(N), backend=f"local://{tmp}/b")
             fleet = job.run_local(2); job.results()
  processes  cf.map(abs, range(N), plan=cf.processes(2))      (for reference)

Both durable runners start 2 ``cheerful worker`` processes of one slot each (on 2 cores:
the plan's share of the cores and ``run_local``'s agree) and chunk automatically.

Every measurement is a fresh Python process (``--one RUNNER N``) with a fresh backend
directory, set up before the clock (``cf.submit(abs, [1], backend=url).delete()``). The
clock runs from just before the plan is entered (or ``cf.submit`` is called) to the moment
the result list is in hand: job submission, worker start-up, the chunks, and the polling
that sees them done are all inside; stopping the workers is not (``fleet.stop()`` after the
clock; the plan stops its own workers in a thread as ``cf.map`` returns). The runners of
one repetition are interleaved, so a machine that gets busier slows all alike. Every
result list is checked: a run whose results are wrong is reported with ``!!!`` and left
out of the medians.

Overhead per task is ``wall / N``; the marginal cost per task is the slope between the two
largest N, ``(wall(N2) - wall(N1)) / (N2 - N1)``: what one more task costs once the fixed
start-up is paid.

For the durable runners the store is read after the clock to say where the time went, all
from the clock's start: ``submitted`` (the job's ``submitted`` mark written), ``workers``
(the first worker's loop running, from its heartbeat), ``first``/``last`` (the first and
last chunk result written) and ``in hand`` (the wall time: ``in hand - last`` is the time
the caller's polling took to see that the job was done and read the results).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from local import Failed, child_env, load_average, run_one

TIMEOUT = 600
WORKERS = 2
SIZES = (100, 1000, 10_000)
RUNNERS = ("plan", "submit", "processes")
DURABLE = ("plan", "submit")
PHASES = ("submitted", "workers", "first", "last")


# --- inside the measuring subprocess ---------------------------------------------------------


def timeline(root: Path, start: float) -> dict:
    """When (seconds after ``start``, unix time) the job's milestones were written."""
    store = root / "store"
    jobs = [p for p in (store / "jobs").iterdir() if p.is_dir()]
    if len(jobs) != 1:
        return {}
    job = jobs[0]
    found: dict = {"chunks": 0}
    submitted = job / "submitted"
    if submitted.exists():
        found["submitted"] = submitted.stat().st_mtime - start
    results = [
        p.stat().st_mtime
        for p in (job / "results").rglob("*")
        if p.is_file() and ".failed-" not in p.name
    ]
    if results:
        found["chunks"] = len(results)
        found["first"] = min(results) - start
        found["last"] = max(results) - start
    started = []
    for node in (store / "nodes").glob("*.json"):
        try:
            started.append(json.loads(node.read_text())["started"])
        except (OSError, ValueError, KeyError):
            continue
    if started:
        found["workers"] = min(started) - start
    return found


def wrong(results: list, expected: list) -> dict:
    """Nothing if ``results`` are ``expected``; else how many tasks came back wrong, and
    the first few of them as (index, got, expected)."""
    if results == expected:
        return {}
    bad = [(i, r, e) for i, (r, e) in enumerate(zip(results, expected, strict=False)) if r != e]
    return {"wrong": len(bad) + abs(len(results) - len(expected)), "wrong_first": bad[:5]}


def one(runner: str, n: int) -> dict:
    import cheerful as cf

    items = range(n)
    expected = list(items)
    if runner == "processes":
        start = time.perf_counter()
        results = cf.map(abs, items, plan=cf.processes(WORKERS))
        wall = time.perf_counter() - start
        return {"wall": wall, **wrong(results, expected)}

    tmp = Path(tempfile.mkdtemp(prefix="cheerful-bench-plan-"))
    root = tmp / "b"
    url = f"local://{root}"
    try:
        cf.submit(abs, [1], backend=url).delete()  # sets the backend up, before the clock
        fleet = None
        unix = time.time()
        start = time.perf_counter()
        if runner == "plan":
            with cf.plan(cf.durable_jobs(url, workers=WORKERS)):
                results = cf.map(abs, items)
        else:
            job = cf.submit(abs, items, backend=url)
            fleet = job.run_local(WORKERS)
            results = job.results()
        wall = time.perf_counter() - start
        if fleet is not None:
            fleet.stop()
        for thread in threading.enumerate():  # the plan stops its workers in a thread
            if thread is not threading.current_thread() and not thread.daemon:
                thread.join()
        return {"wall": wall, **timeline(root, unix), **wrong(results, expected)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- the driver --------------------------------------------------------------------------


def measure(runner: str, n: int) -> dict:
    return run_one(__file__, runner, str(n), timeout=TIMEOUT)


def warm_up() -> None:
    """Import cheerful (and its worker) once, so that bytecode is cached before any clock."""
    code = "import cheerful, cheerful.durable.worker, cheerful.durable.job, cheerful.cli"
    subprocess.run([sys.executable, "-c", code], env=child_env(), check=False, timeout=TIMEOUT)


def run_all(sizes: list[int], runners: list[str], repeat: int, notes: list[str]) -> dict:
    """Every (N, runner) ``repeat`` times, runners interleaved per repetition."""
    runs: dict[int, dict[str, list[dict]]] = {}
    warm_up()
    for n in sizes:
        for round_ in range(1, repeat + 1):
            for runner in runners:
                try:
                    result = measure(runner, n)
                except (Failed, subprocess.TimeoutExpired) as exc:
                    notes.append(f"N={n} {runner} run {round_} failed: {exc}")
                    continue
                if result.get("wrong"):
                    notes.append(
                        f"!!! N={n} {runner} run {round_}: {result['wrong']} of {n} results wrong"
                        f" (index, got, expected: {result['wrong_first']}); left out of the medians"
                    )
                    print(f"!!! WRONG RESULTS: {notes[-1]}", file=sys.stderr)
                else:
                    runs.setdefault(n, {}).setdefault(runner, []).append(result)
                shown = ", ".join(
                    f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in result.items()
                )
                print(f"N={n} {round_}/{repeat} {runner:<9} {shown}", file=sys.stderr)
    return runs


def median_of(results: list[dict], key: str) -> float | None:
    values = [r[key] for r in results if key in r]
    return statistics.median(values) if values else None


def render(runs: dict, runners: list[str], repeat: int, notes: list[str]) -> list[dict]:
    rows = []
    print(f"\nabs over range(N), {WORKERS} workers; medians of {repeat} (seconds unless said)")
    print(
        f"{'N':>6} {'runner':<9} {'wall':>7} {'min':>7} {'max':>7} {'ms/task':>8}"
        "   where the time went (median s from the clock's start)"
    )
    for n, by_runner in runs.items():
        for runner in runners:
            results = by_runner.get(runner, [])
            if not results:
                continue
            walls = [r["wall"] for r in results]
            wall = statistics.median(walls)
            row = {
                "n": n,
                "runner": runner,
                "wall": wall,
                "min": min(walls),
                "max": max(walls),
                "ms_per_task": 1000 * wall / n,
                "walls": walls,
            }
            phases = ""
            if runner in DURABLE:
                medians = {k: median_of(results, k) for k in (*PHASES, "chunks")}
                row["phases"] = medians
                phases = "   " + " ".join(
                    f"{k} {v:.3f}" if k != "chunks" else f"({v:.0f} chunks)"
                    for k, v in medians.items()
                    if v is not None
                )
            rows.append(row)
            print(
                f"{n:>6} {runner:<9} {wall:7.3f} {min(walls):7.3f} {max(walls):7.3f}"
                f" {row['ms_per_task']:8.3f}{phases}"
            )
    sizes = sorted(runs)
    if len(sizes) >= 2:
        n1, n2 = sizes[-2], sizes[-1]
        slopes = []
        for runner in runners:
            a = median_of(runs[n1].get(runner, []), "wall")
            b = median_of(runs[n2].get(runner, []), "wall")
            if a is not None and b is not None:
                slopes.append(f"{runner} {1000 * (b - a) / (n2 - n1):.3f}")
        print(f"marginal ms per task (N={n1} -> {n2}): " + ", ".join(slopes))
    for note in notes:
        print(f"- {note}")
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", default=",".join(map(str, SIZES)), help="task counts, e.g. 100,1000")
    p.add_argument("--runners", default=",".join(RUNNERS), help="subset of plan,submit,processes")
    p.add_argument("--repeat", type=int, default=5, help="runs per measurement (median shown)")
    p.add_argument("--json", metavar="PATH", help="also write every run as JSON")
    p.add_argument("--one", nargs=2, metavar=("RUNNER", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        args.n = sorted({int(s) for s in args.n.split(",") if s.strip()})
    except ValueError:
        p.error("--n takes whole numbers, e.g. 100,1000")
    if not args.n or min(args.n) < 1:
        p.error("--n needs positive task counts")
    args.runners = [s.strip() for s in args.runners.split(",") if s.strip()]
    if bad := set(args.runners) - set(RUNNERS):
        p.error(f"unknown runner {', '.join(sorted(bad))}: choose from {', '.join(RUNNERS)}")
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one:
        runner, n = args.one
        print(json.dumps(one(runner, int(n))), flush=True)
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    before = load_average()
    notes: list[str] = []
    runs = run_all(args.n, args.runners, args.repeat, notes)
    notes.append(f"{cores} usable cores; load average {before} -> {load_average()}")
    notes.append(f"python {platform.python_version()}; {platform.platform()}")
    rows = render(runs, args.runners, args.repeat, notes)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cores": cores, "runs": runs, "rows": rows, "notes": notes}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
