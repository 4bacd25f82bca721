"""Size sweep: cf.map / cf.imap against multiprocessing.Pool, trivial tasks, 1 to 5M.

    python bench/sweep.py                        # everything, 3 runs per figure
    python bench/sweep.py --quick                # sizes up to 10^5 only
    python bench/sweep.py --only map,cold --repeat 5 --json sweep.json
    python bench/sweep.py --one cf-map 1000      # one measurement (what the driver runs)

Parts (``--only``), all on 2 workers:
  map    ``multiprocessing.Pool(2).map(abs, range(n))`` vs
         ``cf.map(abs, range(n), plan=cf.processes(2))``
  imap   ``list(Pool(2).imap(abs, range(n), chunksize=ceil(n / 8)))`` (the chunk size
         Pool.map would pick for 2 workers: ``divmod(n, 4 * 2)``, rounded up) vs
         ``list(cf.imap(abs, range(n), plan=cf.processes(2), ordered=True))``, and the same
         over ``iter(range(n))`` (the lazy path) on both sides; then cheerful's default
         imap, unordered ``(index, result)`` pairs, vs ``Pool.imap_unordered``: both keep
         the values in the order they came (``[v for _, v in pairs]``), so that memory
         compares what each library holds, not the pairs a list of them would keep
  sleep  1,000 x ``time.sleep(0.01)``: Pool(2).map vs cf.map (ideal: 5 s)
  cold   a whole ``python -c "import cheerful as cf; print(cf.map(abs, [1]))"`` vs
         ``python -c "import multiprocessing as mp; print(mp.Pool(2).map(abs, [1]))"``,
         spawn to exit; the same with a function defined in the ``-c`` script (cheerful
         sends it by value, Pool by name to its forked workers); and ``python -X importtime``:
         ``import cheerful`` vs ``import
         multiprocessing``, and what a map loads (``cf.map``, ``cf.processes`` resolved)
         vs ``import multiprocessing.pool``

Every map measurement is a fresh Python process, so memory is per run. In it the library
and the names the map uses are imported first (cheerful's lazy ``cf.map`` and
``cf.processes`` resolved; ``multiprocessing.pool`` imported); the clock then runs from
the start of the map call, pool start-up included for both, to the result list in hand
(pool shutdown is not timed). RSS is the driver's peak ``ru_maxrss`` in that process, read
right after the map returns, minus nothing; the JSON also keeps its value before the clock.
Runners are interleaved within each size and round. Figures are medians.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from local import Failed, _tail, child_env, load_average, machine, peak_rss_mb, run_one, warm_up

WORKERS = 2
SIZES = (1, 10**3, 10**4, 10**5, 10**6, 5 * 10**6)
QUICK_MAX = 10**5
SLEEP_TASKS, SLEEP_SECONDS = 1000, 0.01
COLD_REPEAT = 7
TIMEOUT = 900
PARTS = ("map", "imap", "sleep", "cold")


def nap(i: int) -> int:
    time.sleep(SLEEP_SECONDS)
    return i


def pool_chunksize(n: int) -> int:
    """The chunk size ``Pool.map`` picks for ``n`` items on ``WORKERS`` processes."""
    return max(1, math.ceil(n / (4 * WORKERS)))


# --- inside the measuring subprocess: one runner, one size ---------------------------------
# Each runner is (prepare, run): ``prepare`` imports what the run needs, before the clock;
# ``run(n)`` is what is timed and returns (results, close). ``close`` runs after the clock.


def _prep_cheerful() -> None:
    import cheerful as cf

    cf.map, cf.imap, cf.processes  # noqa: B018 - resolve the lazy names before the clock


def _prep_pool() -> None:
    import multiprocessing.pool  # noqa: F401


def _cf_map(n: int):
    import cheerful as cf

    return cf.map(abs, range(n), plan=cf.processes(WORKERS)), None


def _cf_imap(n: int):
    import cheerful as cf

    return list(cf.imap(abs, range(n), plan=cf.processes(WORKERS), ordered=True)), None


def _cf_imap_gen(n: int):
    import cheerful as cf

    return list(cf.imap(abs, iter(range(n)), plan=cf.processes(WORKERS), ordered=True)), None


def _cf_imap_pairs(n: int):
    import cheerful as cf

    pairs = cf.imap(abs, range(n), plan=cf.processes(WORKERS))
    return [value for _, value in pairs], None  # kept as imap_unordered's are: values


def _cf_sleep(n: int):
    import cheerful as cf

    return cf.map(nap, range(n), plan=cf.processes(WORKERS)), None


def _pool_map(n: int, fn: Callable = abs):
    import multiprocessing

    pool = multiprocessing.Pool(WORKERS)
    return pool.map(fn, range(n)), pool


def _pool_imap(n: int, lazy: bool = False, unordered: bool = False):
    import multiprocessing

    pool = multiprocessing.Pool(WORKERS)
    imap = pool.imap_unordered if unordered else pool.imap
    items = iter(range(n)) if lazy else range(n)
    return list(imap(abs, items, chunksize=pool_chunksize(n))), pool


def _pool_imap_gen(n: int):
    return _pool_imap(n, lazy=True)


def _pool_imap_unordered(n: int):
    return _pool_imap(n, unordered=True)


def _pool_sleep(n: int):
    return _pool_map(n, nap)


# name: (prepare, run, what the results are: "ordered" values or "unordered" values)
RUNNERS: dict[str, tuple[Callable, Callable, str]] = {
    "pool-map": (_prep_pool, _pool_map, "ordered"),
    "cf-map": (_prep_cheerful, _cf_map, "ordered"),
    "pool-imap": (_prep_pool, _pool_imap, "ordered"),
    "cf-imap": (_prep_cheerful, _cf_imap, "ordered"),
    "pool-imap-gen": (_prep_pool, _pool_imap_gen, "ordered"),
    "cf-imap-gen": (_prep_cheerful, _cf_imap_gen, "ordered"),
    "pool-imap-unordered": (_prep_pool, _pool_imap_unordered, "unordered"),
    "cf-imap-pairs": (_prep_cheerful, _cf_imap_pairs, "unordered"),
    "pool-sleep": (_prep_pool, _pool_sleep, "ordered"),
    "cf-sleep": (_prep_cheerful, _cf_sleep, "ordered"),
}


def _check(results: list, n: int, kind: str) -> None:
    """Every result right (abs and nap both return the input), without a big allocation."""
    assert len(results) == n, (len(results), n)
    if kind == "ordered":
        assert all(r == i for i, r in enumerate(results)), "results out of order or wrong"
        return
    seen = bytearray(n)
    for r in results:
        assert not seen[r], r
        seen[r] = 1


def one(name: str, n: int) -> None:
    prepare, run, kind = RUNNERS[name]
    prepare()
    rss0 = peak_rss_mb()
    start = time.perf_counter()
    results, pool = run(n)
    wall = time.perf_counter() - start
    rss = peak_rss_mb()  # before the check, which must not count
    if pool is not None:
        pool.close()
        pool.join()
    _check(results, n, kind)
    print(json.dumps({"wall": wall, "rss": rss, "rss0": rss0}), flush=True)


# --- the driver ----------------------------------------------------------------------------


def measure(name: str, n: int) -> dict:
    return run_one(__file__, name, str(n), timeout=TIMEOUT)


# (part, label, Pool runner, cheerful runner, sizes or None for the sweep sizes)
ROWS = [
    ("map", "map", "pool-map", "cf-map", None),
    ("imap", "imap(ordered=True)", "pool-imap", "cf-imap", None),
    ("imap", "imap(generator, ordered=True)", "pool-imap-gen", "cf-imap-gen", None),
    ("imap", "imap pairs vs imap_unordered", "pool-imap-unordered", "cf-imap-pairs", None),
    ("sleep", "1k x sleep(0.01)", "pool-sleep", "cf-sleep", (SLEEP_TASKS,)),
]


def run_sweep(parts: set[str], sizes: tuple[int, ...], repeat: int, notes: list[str]) -> dict:
    """Every (runner, n): ``repeat`` measurements, runners interleaved per size and round."""
    runs: dict[tuple[str, int], list[dict]] = {}
    plan: dict[tuple[int, ...], list[str]] = {}
    for part, _, pool, mine, own_sizes in ROWS:
        if part in parts:
            names = plan.setdefault(own_sizes or sizes, [])
            names += [r for r in (pool, mine) if r not in names]
    for size_set, names in plan.items():
        for n in size_set:
            for round_ in range(1, repeat + 1):
                for name in names:
                    try:
                        result = measure(name, n)
                    except (Failed, subprocess.TimeoutExpired) as exc:
                        notes.append(f"{name} n={n} run {round_} failed: {exc}")
                        continue
                    shown = ", ".join(f"{k}={v:.3f}" for k, v in result.items())
                    print(f"n={n:<8} {round_}/{repeat} {name:<12} {shown}", file=sys.stderr)
                    runs.setdefault((name, n), []).append(result)
    return runs


# what each cold row runs, Pool side and cheerful side: a builtin (pickled by name on both
# sides), and a function of the script itself (Pool pickles it by name, which its forked
# workers resolve; cheerful sends it by value, so that a kept worker never runs an older
# definition, and that loads cloudpickle)
COLD = {
    "python -c, spawn to exit (s)": (
        "import multiprocessing as mp; print(mp.Pool(2).map(abs, [1]))",
        "import cheerful as cf; print(cf.map(abs, [1]))",
    ),
    "python -c, a function of the script, spawn to exit (s)": (
        "import multiprocessing as mp\ndef f(x): return abs(x)\nprint(mp.Pool(2).map(f, [1]))",
        "import cheerful as cf\ndef f(x): return abs(x)\nprint(cf.map(f, [1]))",
    ),
}
IMPORTS = {  # what -X importtime times, Pool side and cheerful side
    "import": ("import multiprocessing", "import cheerful"),
    "map machinery": ("import multiprocessing.pool", "import cheerful as cf; cf.map; cf.processes"),
}
_IMPORTTIME = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|( *)(\S+)")


def importtime_ms(code: str) -> float:
    """Milliseconds of the imports ``code`` makes, per ``python -X importtime``.

    The sum of the cumulative times of the top-level imports that ``python -c pass``
    does not make (so the interpreter's own start-up imports are left out).
    """

    def entries(source: str) -> list[tuple[str, int, int]]:
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", source],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=child_env(),
        )
        if proc.returncode:
            raise Failed(_tail(proc.stderr))
        found = []
        for line in proc.stderr.splitlines():
            if m := _IMPORTTIME.match(line):
                found.append((m[4], len(m[3]) - 1, int(m[2])))  # name, depth, cumulative us
        return found

    startup = {name for name, _, _ in entries("pass")}
    return sum(us for name, depth, us in entries(code) if depth == 0 and name not in startup) / 1e3


def cold_wall(code: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=child_env(),
    )
    wall = time.perf_counter() - start
    if proc.returncode or proc.stdout.strip() != "[1]":
        raise Failed(_tail(proc.stderr or proc.stdout))
    return wall


def run_cold(repeat: int, notes: list[str]) -> dict[str, dict[str, list[float]]]:
    """Cold ``python -c`` walls and import times, ``repeat`` of each, interleaved."""
    runs: dict[str, dict[str, list[float]]] = {}
    for round_ in range(1, repeat + 1):
        for what, codes in COLD.items():
            for side, code in zip(("pool", "cheerful"), codes, strict=True):
                try:
                    runs.setdefault(what, {}).setdefault(side, []).append(cold_wall(code))
                except (Failed, subprocess.TimeoutExpired) as exc:
                    notes.append(f"cold {side} ({what}) run {round_} failed: {exc}")
        for what, codes in IMPORTS.items():
            for side, code in zip(("pool", "cheerful"), codes, strict=True):
                key = f"importtime, {what} (ms)"
                runs.setdefault(key, {}).setdefault(side, []).append(importtime_ms(code))
        print(f"cold {round_}/{repeat} done", file=sys.stderr)
    return runs


# --- the report ----------------------------------------------------------------------------


def _median(runs: list[dict], key: str) -> float | None:
    return statistics.median(r[key] for r in runs) if runs else None


def _ratio(mine: float | None, theirs: float | None) -> str:
    return f"{mine / theirs:.2f}" if mine is not None and theirs else "-"


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def sweep_table(runs: dict, parts: set[str], sizes: tuple[int, ...]) -> list[str]:
    lines = [
        "| workload | n | Pool s | cheerful s | wall ratio | Pool MB | cheerful MB | RSS ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for part, label, pool, mine, own_sizes in ROWS:
        if part not in parts:
            continue
        for n in own_sizes or sizes:
            theirs, ours = runs.get((pool, n), []), runs.get((mine, n), [])
            tw, mw = _median(theirs, "wall"), _median(ours, "wall")
            tr, mr = _median(theirs, "rss"), _median(ours, "rss")
            lines.append(
                f"| {label} | {n:,} | {_num(tw, '.3f')} | {_num(mw, '.3f')} | {_ratio(mw, tw)} "
                f"| {_num(tr, '.0f')} | {_num(mr, '.0f')} | {_ratio(mr, tr)} |"
            )
    return lines


def cold_table(runs: dict) -> list[str]:
    lines = ["| cold start | Pool | cheerful | ratio |", "|---|---:|---:|---:|"]
    for key, sides in runs.items():
        theirs = statistics.median(sides["pool"]) if sides.get("pool") else None
        mine = statistics.median(sides["cheerful"]) if sides.get("cheerful") else None
        fmt = ".3f" if key.endswith("(s)") else ".1f"
        lines.append(
            f"| {key} | {_num(theirs, fmt)} | {_num(mine, fmt)} | {_ratio(mine, theirs)} |"
        )
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", default=",".join(PARTS), help=f"subset of {','.join(PARTS)}")
    p.add_argument("--quick", action="store_true", help=f"sizes up to {QUICK_MAX:,} only")
    p.add_argument("--repeat", type=int, default=3, help="runs per figure (median shown)")
    p.add_argument(
        "--repeat-largest", type=int, help="runs at the largest size (default: --repeat)"
    )
    p.add_argument("--cold-repeat", type=int, default=COLD_REPEAT, help="runs of cold starts")
    p.add_argument("--json", metavar="PATH", help="also write every run as JSON")
    p.add_argument("--one", nargs=2, metavar=("RUNNER", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.only = {s.strip() for s in args.only.split(",") if s.strip()}
    if bad := args.only - set(PARTS):
        p.error(f"unknown part {', '.join(sorted(bad))}: choose from {', '.join(PARTS)}")
    if min(args.repeat, args.cold_repeat, args.repeat_largest or 1) < 1:
        p.error("repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one:
        one(args.one[0], int(args.one[1]))
        return 0
    notes: list[str] = []
    info = machine()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    warm_up(["cheerful", "pool"])
    sizes = tuple(n for n in SIZES if not args.quick or n <= QUICK_MAX)
    runs = run_sweep(args.only, sizes[:-1], args.repeat, notes)
    largest = args.repeat_largest or args.repeat
    runs.update(run_sweep(args.only - {"sleep"}, sizes[-1:], largest, notes))
    cold = run_cold(args.cold_repeat, notes) if "cold" in args.only else {}
    load = load_average()
    notes.append(
        f"{args.repeat} runs per figure ({largest} at n={sizes[-1]:,}), "
        f"{args.cold_repeat} per cold-start figure; Pool.imap chunksize = ceil(n / 8)"
    )
    notes.append(f"{info['usable_cores']} usable cores; load average {info['loadavg']} -> {load}")
    if hasattr(os, "getloadavg") and load_before > (info["usable_cores"] or 1):
        # the load before the sweep: during it, the sweep's own 3 processes count too
        notes.append("the machine was busy (load above its cores): absolute figures understate")
    out = []
    if runs:
        out += ["cheerful vs multiprocessing.Pool, 2 workers (medians; ratio = cheerful / Pool)"]
        out += ["", *sweep_table(runs, args.only, sizes), ""]
    if cold:
        out += [*cold_table(cold), ""]
    out += [f"- {note}" for note in notes]
    print("\n".join(out))
    if args.json:
        with open(args.json, "w") as f:
            report = {
                "machine": info,
                "runs": [{"runner": k[0], "n": k[1], "runs": v} for k, v in runs.items()],
                "cold": cold,
                "notes": notes,
            }
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
