"""cf.map against the usual local process pools, side by side, medians of several runs.

    python bench/local.py                                  # everything, 5 runs each
    python bench/local.py --scenario A,C --peers pool,joblib --repeat 3 --json out.json
    python bench/local.py --one cheerful A                 # one measurement (what the driver runs)
    python bench/local.py --sweep --quick --repeat 5       # the size sweep: bench/sweep.py

Every measurement runs in a fresh Python process, so pool start-up is paid each time and
nothing (a warm pool, imported modules) leaks from one measurement to the next. Inside it,
the clock runs from just before the pool is created to the moment the result list is in
hand: library imports are done before (scenario C reports them), pool shutdown after.
Scenario C instead times a whole cold ``python -c`` from spawn to the printed result. The
runners of one repetition are interleaved, so a machine that gets busier during the run
slows every library alike; on a busy machine (load above its cores) absolute figures,
B's efficiency above all, understate what an idle machine does.

Scenarios (2 workers unless said):
  A  10,000 trivial tasks (x + 1), pool start + map          goal: cheerful <= best peer
  B  64 tasks of ~0.1 s pure-Python CPU; efficiency =
     (64 * t_task / 2) / wall, t_task calibrated once per run goal: >= 0.95 and >= every peer
  C  cold `python -c` to the first result of a 1-task map   goal: <= 0.15 s
  D  20 numpy arrays of 10 MB, task returns float(a.sum());
     wall, and the driver's peak RSS increase               goal: cheerful <= best peer
  E  8 tasks of time.sleep(2) on 8 workers                  goal: <= 2.1 s
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

WORKERS = 2
A_TASKS = 10_000
B_TASKS, B_TASK_SECONDS = 64, 0.1
D_TASKS, D_ELEMENTS = 20, 1_250_000  # 1.25M float64 = 10 MB per input
E_TASKS = E_WORKERS = 8
E_SECONDS = 2.0
TIMEOUT = 600


# --- the tasks (module level, so that every library can pickle them) ---------------------


def inc(x: int) -> int:
    return x + 1


def busy(n: int) -> int:
    total = 0
    for i in range(n):
        total += i
    return total


def array_sum(a) -> float:
    return float(a.sum())


def nap(i: int) -> int:
    time.sleep(E_SECONDS)
    return i


def run_batch(fn: Callable, batch: list) -> list:
    return [fn(x) for x in batch]


# --- one map per runner: start a pool, map, return (results, close) ------------------------


def map_cheerful(fn, items, workers):
    import cheerful as cf

    return cf.map(fn, items, plan=cf.processes(workers)), lambda: None


def map_pool(fn, items, workers):
    import multiprocessing

    pool = multiprocessing.Pool(workers)
    return pool.map(fn, items), lambda: (pool.close(), pool.join())


def map_ppe(fn, items, workers, chunksize=1):
    from concurrent.futures import ProcessPoolExecutor

    executor = ProcessPoolExecutor(workers)
    return list(executor.map(fn, items, chunksize=chunksize)), executor.shutdown


def map_ppe_1250(fn, items, workers):
    return map_ppe(fn, items, workers, chunksize=1250)


def map_joblib(fn, items, workers):
    from joblib import Parallel, delayed

    return Parallel(n_jobs=workers)(delayed(fn)(x) for x in items), lambda: None


def map_dask(fn, items, workers, batched=False):
    import logging

    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    client = Client(cluster)
    if batched:
        n = 2 * workers
        batches = [items[i::n] for i in range(n)]
        parts = client.gather(client.map(run_batch, [fn] * n, batches, pure=False))
        results = [None] * len(items)
        for i, part in enumerate(parts):
            results[i::n] = part
    else:
        if items and hasattr(items[0], "nbytes"):  # arrays: scatter first, as dask advises
            items = client.scatter(items)
        results = client.gather(client.map(fn, items, pure=False))  # B's inputs are equal
    return results, lambda: (client.close(), cluster.close())


def map_dask_batched(fn, items, workers):
    return map_dask(fn, items, workers, batched=True)


@dataclass(frozen=True)
class Runner:
    label: str
    module: str  # imported before the clock starts; also how we tell it is installed
    run: Callable
    scenarios: str
    c_code: tuple[str, str, str] | None = None  # scenario C: import, map, close


RUNNERS = {
    "cheerful": Runner(
        "cheerful",
        "cheerful",
        map_cheerful,
        "ABCDE",
        ("import cheerful as cf", "result = cf.map(abs, [-1], plan=cf.processes({w}))", ""),
    ),
    "pool": Runner(
        "Pool",
        "multiprocessing.pool",
        map_pool,
        "ABCDE",
        (
            "import multiprocessing",
            "pool = multiprocessing.Pool({w}); result = pool.map(abs, [-1])",
            "pool.close(); pool.join()",
        ),
    ),
    "ppe": Runner(
        "PPE",
        "concurrent.futures.process",
        map_ppe,
        "ABCDE",
        (
            "from concurrent.futures import ProcessPoolExecutor",
            "ex = ProcessPoolExecutor({w}); result = list(ex.map(abs, [-1]))",
            "ex.shutdown()",
        ),
    ),
    "ppe-1250": Runner("PPE cs=1250", "concurrent.futures.process", map_ppe_1250, "A"),
    "joblib": Runner(
        "joblib",
        "joblib",
        map_joblib,
        "ABCDE",
        (
            "from joblib import Parallel, delayed",
            "result = Parallel(n_jobs={w})([delayed(abs)(-1)])",
            "",
        ),
    ),
    "dask": Runner(
        "dask",
        "distributed",
        map_dask,
        "ABCDE",
        (
            "import logging; from distributed import Client, LocalCluster",
            "cluster = LocalCluster(n_workers={w}, threads_per_worker=1, processes=True,"
            " dashboard_address=None, silence_logs=logging.ERROR); client = Client(cluster);"
            " result = client.gather(client.map(abs, [-1]))",
            "client.close(); cluster.close()",
        ),
    ),
    "dask-batched": Runner("dask batch", "distributed", map_dask_batched, "A"),
}
PEER_FAMILIES = ("pool", "ppe", "joblib", "dask")


# --- inside the measuring subprocess ---------------------------------------------------------


def timed_map(name: str, fn: Callable, items: list, workers: int) -> tuple[list, float]:
    start = time.perf_counter()
    results, close = RUNNERS[name].run(fn, items, workers)
    wall = time.perf_counter() - start
    close()
    return results, wall


def peak_rss_mb() -> float:
    import resource

    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def child_a(name: str, _: str) -> dict:
    items = list(range(A_TASKS))
    results, wall = timed_map(name, inc, items, WORKERS)
    assert results == [x + 1 for x in items]
    return {"wall": wall}


def child_b(name: str, iterations: str) -> dict:
    results, wall = timed_map(name, busy, [int(iterations)] * B_TASKS, WORKERS)
    assert results == [busy(int(iterations))] * B_TASKS
    return {"wall": wall}


def child_d(name: str, _: str) -> dict:
    import numpy as np

    arrays = [np.full(D_ELEMENTS, float(i)) for i in range(D_TASKS)]
    baseline = peak_rss_mb()
    results, wall = timed_map(name, array_sum, arrays, WORKERS)
    assert results == [float(i) * D_ELEMENTS for i in range(D_TASKS)]
    return {"wall": wall, "rss": peak_rss_mb() - baseline}


def child_e(name: str, _: str) -> dict:
    results, wall = timed_map(name, nap, list(range(E_TASKS)), E_WORKERS)
    assert results == list(range(E_TASKS))
    return {"wall": wall}


CHILDREN = {"A": child_a, "B": child_b, "D": child_d, "E": child_e}


def one(name: str, scenario: str, arg: str) -> None:
    library = importlib.import_module(RUNNERS[name].module)
    if name == "cheerful":  # its names load when first used: use them before the clock
        library.map, library.processes  # noqa: B018 - as multiprocessing.pool is imported
        import cloudpickle  # noqa: F401 - this script's functions travel by value with it
    if scenario == "D":
        import numpy  # noqa: F401 - imported before the clock, like the libraries
    print(json.dumps(CHILDREN[scenario](name, arg)), flush=True)


# --- the driver: spawn measurements ------------------------------------------------------


def child_env() -> dict[str, str]:
    """The environment of measurements: as a user's, where Python keeps compiled bytecode.

    With PYTHONDONTWRITEBYTECODE set, a package installed in editable mode (cheerful
    here) is compiled from source at every import, while installed peers load the
    .pyc files pip wrote: that would not be a fair race.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def warm_up(names: list[str]) -> None:
    """Import each library once, so that its bytecode is cached before the clock runs."""
    modules = sorted({RUNNERS[n].module for n in names})
    code = "; ".join(f"import {m}" for m in modules)
    subprocess.run([sys.executable, "-c", code], env=child_env(), check=False, timeout=TIMEOUT)


class Failed(Exception):
    """A measurement's subprocess failed; the message is the end of its stderr."""


def run_one(script: str, *args: str, timeout: float = TIMEOUT) -> dict:
    """Run ``python SCRIPT --one ARGS`` (one measurement, in a fresh process of its own);
    return the JSON of its last line of output, or raise :class:`Failed` with its stderr.
    Every benchmark of this folder measures this way."""
    cmd = [sys.executable, os.path.abspath(script), "--one", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=child_env())
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        raise Failed(_tail(proc.stderr))
    return json.loads(lines[-1])


def measure(name: str, scenario: str, arg: str) -> dict:
    if scenario == "C":
        return measure_cold(name)
    return run_one(__file__, name, scenario, arg)


def cold_program(name: str) -> str:
    imports, work, close = RUNNERS[name].c_code
    return "\n".join(
        [
            "import time",
            "t0 = time.perf_counter()",
            imports,
            "t1 = time.perf_counter()",
            work.format(w=WORKERS),
            "t2 = time.perf_counter()",
            "assert result == [1], result",
            "print(t1 - t0, t2 - t0, flush=True)",
            close,
        ]
    )


def measure_cold(name: str) -> dict:
    """Spawn ``python -c``; time to its printed result and to its exit."""
    with tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", cold_program(name)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=child_env(),
        )
        watchdog = threading.Timer(TIMEOUT, proc.kill)
        watchdog.start()
        line = proc.stdout.readline()
        first = time.perf_counter() - start
        proc.wait()
        total = time.perf_counter() - start
        watchdog.cancel()
        proc.stdout.close()
        err.seek(0)
        if proc.returncode or not line.strip():
            raise Failed(_tail(err.read()))
    imported, in_process = map(float, line.split())
    return {"first": first, "import": imported, "inproc": in_process, "exit": total}


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[-lines:]) or "no output"


def time_busy(n: int) -> float:
    start = time.perf_counter()
    busy(n)
    return time.perf_counter() - start


def calibrate() -> tuple[int, float]:
    """Iterations of :func:`busy` for a ~0.1 s task here, and the task's time.

    Times are the fastest of a few tries: the task's own cost, without what other
    programs on a busy machine take from it.
    """
    n = 100_000
    while time_busy(n) < 0.02:
        n *= 2
    for _ in range(2):
        n = int(n * B_TASK_SECONDS / min(time_busy(n) for _ in range(3)))
    return n, min(time_busy(n) for _ in range(5))


# --- metrics, goals and the table ----------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    scenario: str
    key: str
    label: str
    unit: str
    higher_is_better: bool = False
    goal: str = ""
    check: Callable[[float, float | None], bool] | None = None


def _le_best(value: float, best: float | None) -> bool:
    return best is None or value <= best


METRICS = [
    Metric("A", "wall", "A 10k trivial tasks", "s", goal="<= best peer", check=_le_best),
    Metric(
        "B",
        "eff",
        "B 64 x 0.1 s CPU, efficiency",
        "",
        True,
        ">= 0.95, >= peers",
        lambda v, best: v >= 0.95 and (best is None or v >= best),
    ),
    Metric(
        "C",
        "first",
        "C cold start to result",
        "s",
        goal="<= 0.15 s",
        check=lambda v, _: v <= 0.15,
    ),
    Metric("C", "inproc", "C   of which in-process", "s"),
    Metric("C", "import", "C   of which import", "s"),
    Metric("C", "exit", "C   until exit", "s"),
    Metric("D", "wall", "D 20 x 10 MB arrays", "s", goal="<= best peer", check=_le_best),
    Metric("D", "rss", "D   driver RSS +", "MB"),
    Metric(
        "E", "wall", "E 8 x sleep(2), 8 workers", "s", goal="<= 2.1 s", check=lambda v, _: v <= 2.1
    ),
]


def summarize(metric: Metric, runs: dict[str, list[float]], names: list[str]) -> dict:
    medians = {n: statistics.median(runs[n]) for n in names if runs.get(n)}
    peers = {n: v for n, v in medians.items() if n != "cheerful"}
    pick = max if metric.higher_is_better else min
    best = pick(peers, key=peers.get) if peers else None
    mine = medians.get("cheerful")
    ratio = mine / peers[best] if mine is not None and best and peers[best] else None
    ok = None
    if metric.check is not None and mine is not None:
        ok = metric.check(mine, peers[best] if best else None)
    return {
        "scenario": metric.scenario,
        "metric": metric.key,
        "label": metric.label,
        "unit": metric.unit or "efficiency",
        "runs": {n: runs.get(n, []) for n in names},
        "median": medians,
        "best_peer": best,
        "ratio": ratio,
        "goal": metric.goal,
        "pass": ok,
    }


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if unit == "MB" else f"{value:.3f}"


def render(rows: list[dict], names: list[str], notes: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    names = [n for n in names if any(n in row["median"] for row in rows)]
    table = Table(title="cheerful vs peers (medians; seconds unless said)")
    table.add_column("scenario")
    for name in names:
        table.add_column(RUNNERS[name].label, justify="right")
    for header in ("best peer", "ratio", "goal", "pass"):
        table.add_column(header, justify="right" if header == "ratio" else "left")
    for row in rows:
        unit = row["unit"]
        best = row["best_peer"]
        cells = [_fmt(row["median"].get(n), unit) for n in names]
        best_cell = f"{RUNNERS[best].label} {_fmt(row['median'][best], unit)}" if best else "-"
        ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else "-"
        verdict = {True: "[green]pass", False: "[red]FAIL", None: ""}[row["pass"]]
        label = row["label"] + (" (MB)" if unit == "MB" else "")
        table.add_row(label, *cells, best_cell, ratio, row["goal"], verdict)
    console = Console(width=None if sys.stdout.isatty() else 150)
    console.print(table)
    for note in notes:
        console.print(f"- {note}")


# --- the driver --------------------------------------------------------------------------


def runners_for(peers: list[str]) -> list[str]:
    names = ["cheerful"]
    for name in RUNNERS:
        if name != "cheerful" and name.split("-")[0] in peers:
            names.append(name)
    return names


def available(names: list[str], notes: list[str]) -> list[str]:
    kept = []
    for name in names:
        module = RUNNERS[name].module
        if importlib.util.find_spec(module.split(".")[0]) is None:
            notes.append(f"skipped {RUNNERS[name].label}: {module} is not installed")
        else:
            kept.append(name)
    return kept


def run_all(scenarios: str, names: list[str], repeat: int, notes: list[str]) -> dict:
    """Measure every (scenario, runner) ``repeat`` times; runners interleaved per round."""
    runs: dict[tuple[str, str], dict[str, list[float]]] = {}
    warm_up(names)
    arg = "0"
    if "B" in scenarios:
        iterations, t_task = calibrate()
        arg = str(iterations)
        notes.append(f"B: one task, busy({iterations}), takes {t_task:.4f} s single-threaded")
    for scenario in scenarios:
        chosen = [n for n in names if scenario in RUNNERS[n].scenarios]
        for round_ in range(1, repeat + 1):
            for name in chosen:
                try:
                    result = measure(name, scenario, arg)
                except (Failed, subprocess.TimeoutExpired) as exc:
                    notes.append(f"{scenario} {RUNNERS[name].label} run {round_} failed: {exc}")
                    continue
                if scenario == "B":
                    result["eff"] = B_TASKS * t_task / WORKERS / result["wall"]
                shown = ", ".join(f"{k}={v:.3f}" for k, v in result.items())
                print(f"{scenario} {round_}/{repeat} {name:<13} {shown}", file=sys.stderr)
                for key, value in result.items():
                    runs.setdefault((scenario, key), {}).setdefault(name, []).append(value)
    return runs


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg": load_average(),
        "versions": {m: package_version(m) for m in ("cheerful", "joblib", "distributed", "numpy")},
    }


def load_average() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"


def package_version(dist: str) -> str | None:
    """The installed version of distribution ``dist``, or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scenario", default="ABCDE", help="e.g. A,C (default: all of ABCDE)")
    p.add_argument(
        "--peers", default=",".join(PEER_FAMILIES), help="subset of pool,ppe,joblib,dask"
    )
    p.add_argument("--repeat", type=int, default=5, help="runs per measurement (median shown)")
    p.add_argument("--json", metavar="PATH", help="also write every run and median as JSON")
    p.add_argument("--one", nargs="+", metavar="ARG", help=argparse.SUPPRESS)
    p.add_argument(
        "--sweep",
        action="store_true",
        help="run the size sweep instead (cf.map and cf.imap vs Pool, 1 to 5,000,000 tasks:\n"
        "bench/sweep.py, which takes the other options; see its --help)",
    )
    args = p.parse_args(argv)
    args.scenario = "".join(s for s in args.scenario.upper() if s.isalpha())
    args.peers = [s.strip() for s in args.peers.split(",") if s.strip()]
    if bad := set(args.scenario) - set("ABCDE"):
        p.error(f"unknown scenario {''.join(sorted(bad))}: choose from A B C D E")
    if bad := set(args.peers) - set(PEER_FAMILIES):
        p.error(f"unknown peer {', '.join(sorted(bad))}: choose from {', '.join(PEER_FAMILIES)}")
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--sweep" in argv:
        import sweep  # beside this file; it imports this module's helpers, hence here

        return sweep.main([a for a in argv if a != "--sweep"])
    args = parse_args(argv)
    if args.one:
        name, scenario, *rest = args.one
        one(name, scenario, rest[0] if rest else "0")
        return 0
    notes: list[str] = []
    names = available(runners_for(args.peers), notes)
    scenarios = args.scenario
    if "D" in scenarios and importlib.util.find_spec("numpy") is None:
        notes.append("skipped D: numpy is not installed")
        scenarios = scenarios.replace("D", "")
    info = machine()
    runs = run_all(scenarios, names, args.repeat, notes)
    load = load_average()
    notes.append(f"{info['usable_cores']} usable cores; load average {info['loadavg']} -> {load}")
    if hasattr(os, "getloadavg") and max(os.getloadavg()[:2]) > (info["usable_cores"] or 1):
        notes.append("the machine was busy (load above its cores): absolute figures understate")
    if "PYTHONDONTWRITEBYTECODE" in os.environ:
        notes.append(
            "measurements ran without PYTHONDONTWRITEBYTECODE (set here), as on a user's machine"
        )
    metrics = [m for m in METRICS if m.scenario in scenarios]
    rows = [summarize(m, runs.get((m.scenario, m.key), {}), names) for m in metrics]
    render(rows, names, notes)
    if args.json:
        with open(args.json, "w") as f:
            report = {"machine": info, "repeat": args.repeat, "rows": rows, "notes": notes}
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
