"""Durable jobs on the embedded backend, measured; Lithops' localhost backend side by side.

    python bench/durable.py                         # everything: medians of 3 runs
    python bench/durable.py --only throughput,overhead --repeat 5 --json out.json
    python bench/durable.py --one throughput        # one measurement, printed as JSON

Every measurement runs in a fresh Python process on a fresh backend in a temp directory
(``local:///tmp/...``), with the workers as real ``python -m cheerful worker`` processes
(:class:`cheerful.durable.fleet.LocalFleet`), started and ready before the clock starts.

  throughput  10,000 trivial tasks (x + 1), 2 worker slots, automatic chunking: from
              submit to the last result in hand (job.results()). goal >= 3,000 tasks/s.
              Also: worker start-up, from spawning the process to its loop running.
  overhead    500 trivial tasks in 1-task chunks, 2 slots: wall time per task.
  lithops     the same 10,000 tasks through Lithops' localhost backend (2 worker
              processes, localhost storage): from map() to get_result() done.
  recovery    2 workers of 1 slot, visibility 5 s, one long task: kill -9 the worker
              running it; time until the task starts again in the other worker, against
              the visibility timeout. goal <= 1.5x.

Lithops is not a dependency of cheerful: ``pip install lithops`` to include it (the
report says when it is missing). Its localhost backend v1 is used (one runner process
per job with a pool of worker processes); v2, its default, starts one process per task
and is slower still for trivial tasks. One Lithops run of 10,000 tasks can take minutes,
so it runs ``--lithops-repeat`` times (default 1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

TASKS = 10_000
SLOTS = 2
OVERHEAD_TASKS = 500
VISIBILITY_S = 5.0
RECOVERY_TASK_S = 60.0
KILL_AFTER_S = 2.5
TIMEOUT_S = 1800
NAMES = ("throughput", "overhead", "lithops", "recovery")


# --- the tasks (pickled by value from __main__) -------------------------------------------


def inc(x: int) -> int:
    return x + 1


def marked_sleep(args: tuple[str, int, float]) -> int:
    """Leave a marker ``<index>-<worker pid>-<time>`` in ``marks``, then sleep."""
    marks, index, seconds = args
    Path(marks, f"{index}-{os.getppid()}-{time.time():.6f}").touch()
    time.sleep(seconds)
    return index


# --- helpers -----------------------------------------------------------------------------


@contextlib.contextmanager
def workers(count: int, slots: int, **options) -> Iterator[tuple[object, object, float]]:
    """``count`` worker processes of ``slots`` slots on a fresh backend in a temp directory,
    ready (their loops running); yields (backend, fleet, start-up seconds of the slowest)."""
    from cheerful.durable.backends import open_backend
    from cheerful.durable.fleet import LocalFleet

    root = Path(tempfile.mkdtemp(prefix="cheerful-bench-"))
    backend = open_backend(f"local://{root}/backend")
    fleet = LocalFleet(backend, count, slots=slots, log_dir=root / "logs", grace=1.0, **options)
    try:
        spawned = time.time()
        fleet.start()
        startup = max(ready(backend, fleet)) - spawned
        yield backend, fleet, startup
    finally:
        fleet.stop(timeout=5.0)
        backend.close()
        shutil.rmtree(root, ignore_errors=True)


def ready(backend, fleet, timeout: float = 60.0) -> list[float]:
    """Wait for every worker's heartbeat; return when each loop started (unix time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        nodes = [json.loads(backend.store.get(key)) for key in backend.store.list("nodes")]
        if len(nodes) >= fleet.count:
            return [node["started"] for node in nodes]
        if not fleet.alive():
            raise RuntimeError("the workers exited at start; see their logs")
        time.sleep(0.01)
    raise TimeoutError("the workers did not start")


def finish(job, timeout: float = TIMEOUT_S) -> list:
    """Wait for every result (polling often, so the poll does not dominate), then read."""
    job.wait(progress=False, poll=0.01, timeout=timeout)
    return job.results(wait=False)


# --- the measurements (each in its own process) -------------------------------------------


def measure_throughput(tasks: int = TASKS) -> dict:
    import cheerful as cf

    with workers(1, SLOTS) as (backend, _, startup):
        started = time.perf_counter()
        job = cf.submit(inc, range(tasks), backend=backend)
        results = finish(job)
        seconds = time.perf_counter() - started
    assert results == [x + 1 for x in range(tasks)]
    return {
        "tasks": tasks,
        "chunks": job.manifest["chunks"],
        "seconds": seconds,
        "tasks_per_s": tasks / seconds,
        "startup_s": startup,
    }


def measure_overhead(tasks: int = OVERHEAD_TASKS) -> dict:
    import cheerful as cf

    with workers(1, SLOTS) as (backend, _, _startup):
        started = time.perf_counter()
        job = cf.submit(inc, range(tasks), backend=backend, chunk_size=1)
        results = finish(job)
        seconds = time.perf_counter() - started
    assert results == [x + 1 for x in range(tasks)]
    return {"tasks": tasks, "seconds": seconds, "ms_per_task": 1000 * seconds / tasks}


def measure_lithops(tasks: int = TASKS) -> dict:
    try:
        import lithops
    except ImportError:
        return {"missing": "lithops is not installed: pip install lithops"}
    config = {
        "lithops": {"backend": "localhost", "storage": "localhost"},
        "localhost": {"worker_processes": SLOTS, "version": 1},
    }
    started = time.perf_counter()
    executor = lithops.FunctionExecutor(config=config, log_level=None)
    init = time.perf_counter() - started
    try:
        started = time.perf_counter()
        futures = executor.map(inc, range(tasks))
        results = executor.get_result(futures)
        seconds = time.perf_counter() - started
    finally:
        executor.clean()
    assert results == [x + 1 for x in range(tasks)]
    return {
        "tasks": tasks,
        "seconds": seconds,
        "tasks_per_s": tasks / seconds,
        "init_s": init,
        "version": lithops.__version__,
    }


def measure_recovery(visibility: float = VISIBILITY_S) -> dict:
    import cheerful as cf

    marks = tempfile.mkdtemp(prefix="cheerful-marks-")
    try:
        with workers(2, 1, visibility=visibility) as (backend, fleet, _):
            item = (marks, 0, RECOVERY_TASK_S)
            job = cf.submit(marked_sleep, [item], backend=backend, retries=0)
            (first,) = wait_marks(marks, 1)
            holder = first[1]
            if holder not in fleet.pids:
                raise RuntimeError(f"marker pid {holder} is not a worker: {fleet.pids}")
            time.sleep(max(0.0, first[2] + KILL_AFTER_S - time.time()))
            os.kill(holder, signal.SIGKILL)
            killed = time.time()
            again = wait_marks(marks, 2, timeout=visibility * 4)[1]
            job.cancel()
    finally:
        shutil.rmtree(marks, ignore_errors=True)
    seconds = again[2] - killed
    if again[1] == holder:
        raise RuntimeError("the task started again in the killed worker?")
    return {"visibility_s": visibility, "seconds": seconds, "ratio": seconds / visibility}


def wait_marks(marks: str, count: int, timeout: float = 60.0) -> list[tuple[int, int, float]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = os.listdir(marks)
        if len(names) >= count:
            found = [tuple(name.split("-")) for name in names]
            return sorted(((int(i), int(pid), float(t)) for i, pid, t in found), key=lambda m: m[2])
        time.sleep(0.005)
    raise TimeoutError(f"fewer than {count} task starts after {timeout} s")


MEASURES = {
    "throughput": measure_throughput,
    "overhead": measure_overhead,
    "lithops": measure_lithops,
    "recovery": measure_recovery,
}


# --- the driver ----------------------------------------------------------------------------


def one(name: str, tasks: int | None) -> dict:
    """Run measurement ``name`` in a fresh process; return its JSON."""
    argv = [sys.executable, __file__, "--one", name]
    if tasks is not None:
        argv += ["--tasks", str(tasks)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


def median(runs: list[dict], key: str) -> float | None:
    values = [run[key] for run in runs if key in run]
    return statistics.median(values) if values else None


def summarize(runs: dict[str, list[dict]]) -> list[tuple[str, str, str, str]]:
    """Rows of (what, median, runs, goal)."""
    rows = []

    def add(what, name, key, fmt, goal=""):
        value = median(runs.get(name, []), key)
        if value is not None:
            count = sum(key in run for run in runs[name])
            rows.append((what, fmt.format(value), str(count), goal))

    add(
        "cheerful: 10,000 x+1, 2 slots, auto chunks",
        "throughput",
        "tasks_per_s",
        "{:,.0f} tasks/s",
        ">= 3,000",
    )
    add("  submit to last result", "throughput", "seconds", "{:.2f} s")
    add("  worker start-up (spawn to loop running)", "throughput", "startup_s", "{:.2f} s")
    add("cheerful: 500 tasks in 1-task chunks", "overhead", "ms_per_task", "{:.2f} ms/task")
    add("lithops localhost: 10,000 x+1, 2 processes", "lithops", "tasks_per_s", "{:,.0f} tasks/s")
    add("  map to last result", "lithops", "seconds", "{:.1f} s")
    ours, theirs = (
        median(runs.get("throughput", []), "tasks_per_s"),
        median(runs.get("lithops", []), "tasks_per_s"),
    )
    if ours and theirs:
        rows.append(("cheerful / lithops throughput", f"{ours / theirs:,.1f}x", "", ""))
    add("recovery after kill -9 (visibility 5 s)", "recovery", "seconds", "{:.2f} s")
    add("  recovery / visibility", "recovery", "ratio", "{:.2f}x", "<= 1.5x")
    for name, name_runs in runs.items():
        for run in name_runs:
            for problem in ("error", "missing"):
                if problem in run:
                    rows.append((f"{name}: {problem}", run[problem], "", ""))
    return rows


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    header = ("measurement", "median", "runs", "goal")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", default=",".join(NAMES), help=f"some of {','.join(NAMES)}")
    p.add_argument("--repeat", type=int, default=3, help="runs per measurement (median shown)")
    p.add_argument("--lithops-repeat", type=int, default=1, help="runs of the lithops measure")
    p.add_argument("--tasks", type=int, help="tasks of one measurement (with --one)")
    p.add_argument("--json", metavar="PATH", help="also write every run and the medians")
    p.add_argument("--one", metavar="NAME", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one:
        measure = MEASURES[args.one]
        print(json.dumps(measure(args.tasks) if args.tasks else measure()))
        return 0
    names = [n for n in args.only.split(",") if n]
    unknown = set(names) - set(NAMES)
    if unknown:
        sys.exit(f"unknown measurement(s) {sorted(unknown)}; choose among {NAMES}")
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for r in range(max(args.repeat, args.lithops_repeat if "lithops" in names else 0)):
        for name in names:
            if r < (args.lithops_repeat if name == "lithops" else args.repeat):
                print(f"run {r + 1}: {name} ...", file=sys.stderr, flush=True)
                runs[name].append(one(name, None))
    rows = summarize(runs)
    print_table(rows)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"\n{platform.node()}: {os.cpu_count()} CPUs, python {platform.python_version()}, "
        f"load average {load:.2f}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "table": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
