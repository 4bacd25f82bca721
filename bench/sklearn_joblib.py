"""scikit-learn's GridSearchCV on joblib's default backend (loky) and on cheerful's, side by side.

    python bench/sklearn_joblib.py                          # both sizes, 5 runs each
    python bench/sklearn_joblib.py --size small --repeat 3 --json out.json
    python bench/sklearn_joblib.py --one cheerful small     # one measurement, printed as JSON

The workload is ``GridSearchCV(SVC(), grid, cv=5, n_jobs=-1)`` over 20 parameter sets
(5 values of C x 4 of gamma), so 100 fits, plus the refit of the best one (scikit-learn's
default ``refit=True``, in the caller's process, the same for both):

  small  load_digits (1,797 x 64, scaled to [0, 1]): one fit + score ~25-80 ms (median ~30)
  large  make_classification(3,000 x 40, 4 classes): one fit + score ~0.3-0.5 s

The runners (both with ``n_jobs=-1``, so as many workers as usable cores):

  loky      ``with joblib.parallel_config(backend="loky"): search.fit(X, y)``
  cheerful  ``import cheerful.joblib``, then
            ``with cf.plan(cf.processes()), joblib.parallel_config(backend="cheerful"):
            search.fit(X, y)``

Every measurement is a fresh Python process (``--one RUNNER SIZE``): each pays its own
worker start-up inside the clock and nothing stays warm between runs. In that process the
libraries are imported and the data made first; the clock runs from just before the
``with`` blocks are entered to the end of ``fit``. The runners of one repetition are
interleaved, so a machine that gets busier slows both alike. In each repetition the
``cv_results_["mean_test_score"]`` of the two must be identical (SVC is deterministic):
a mismatch is printed loudly and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from local import Failed, child_env, load_average, package_version, run_one

TIMEOUT = 900
RUNNERS = ("loky", "cheerful")
SIZES = ("small", "large")
GRIDS = {
    "small": {"C": [1, 3, 10, 30, 100], "gamma": [0.01, 0.02, 0.05, 0.1]},
    "large": {"C": [0.3, 1, 3, 10, 30], "gamma": [0.005, 0.01, 0.02, 0.05]},
}
FOLDS = 5


def data(size: str):
    """The (X, y) of ``size``."""
    if size == "small":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        return X / 16.0, y
    from sklearn.datasets import make_classification

    return make_classification(
        n_samples=3000,
        n_features=40,
        n_informative=20,
        n_classes=4,
        flip_y=0.05,
        random_state=0,
    )


# --- inside the measuring subprocess ---------------------------------------------------------


def one(runner: str, size: str) -> dict:
    import contextlib

    import joblib
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    import cheerful as cf
    import cheerful.joblib  # noqa: F401 - registers the "cheerful" backend

    X, y = data(size)
    search = GridSearchCV(SVC(), GRIDS[size], cv=FOLDS, n_jobs=-1)
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if runner == "cheerful":
            stack.enter_context(cf.plan(cf.processes()))
        stack.enter_context(joblib.parallel_config(backend=runner))
        search.fit(X, y)
    wall = time.perf_counter() - start
    results = search.cv_results_
    fits = [
        FOLDS * (f + s)
        for f, s in zip(results["mean_fit_time"], results["mean_score_time"], strict=True)
    ]
    return {
        "wall": wall,
        "fit_seconds": sum(fits),  # fit + score of the 100 fits, as timed in the workers
        "scores": [float(s) for s in results["mean_test_score"]],
        "best": search.best_params_,
    }


# --- the driver --------------------------------------------------------------------------


def measure(runner: str, size: str) -> dict:
    return run_one(__file__, runner, size, timeout=TIMEOUT)


def warm_up() -> None:
    """Import everything once, so that bytecode is cached before any clock runs."""
    code = "import sklearn.model_selection, sklearn.svm, joblib, cheerful, cheerful.joblib"
    subprocess.run([sys.executable, "-c", code], env=child_env(), check=False, timeout=TIMEOUT)


def run_all(sizes: list[str], repeat: int, notes: list[str]) -> tuple[dict, int]:
    """Every (size, runner) ``repeat`` times, runners interleaved; (runs, mismatches)."""
    runs: dict[str, dict[str, list[dict]]] = {}
    mismatches = 0
    warm_up()
    for size in sizes:
        for round_ in range(1, repeat + 1):
            got: dict[str, dict] = {}
            for runner in RUNNERS:
                try:
                    result = measure(runner, size)
                except (Failed, subprocess.TimeoutExpired) as exc:
                    notes.append(f"{size} {runner} run {round_} failed: {exc}")
                    continue
                got[runner] = result
                runs.setdefault(size, {}).setdefault(runner, []).append(result)
                print(
                    f"{size} {round_}/{repeat} {runner:<8} wall={result['wall']:.3f} s"
                    f"  fits={result['fit_seconds']:.2f} s  best={result['best']}",
                    file=sys.stderr,
                )
            if len(got) == len(RUNNERS):
                first, *others = RUNNERS
                for other in others:
                    if got[first]["scores"] != got[other]["scores"]:
                        mismatches += 1
                        diff = [
                            (i, a, b)
                            for i, (a, b) in enumerate(
                                zip(got[first]["scores"], got[other]["scores"], strict=False)
                            )
                            if a != b
                        ]
                        print(
                            f"!!! MISMATCH {size} run {round_}: mean_test_score of {first} and "
                            f"{other} differ at {len(diff)} parameter sets: {diff[:5]}",
                            file=sys.stderr,
                        )
                        notes.append(f"MISMATCH of mean_test_score: {size} run {round_}")
    return runs, mismatches


def render(runs: dict, repeat: int, notes: list[str]) -> list[dict]:
    rows = []
    print(
        f"\nGridSearchCV(SVC(), 20 parameter sets, cv=5, n_jobs=-1): wall seconds of fit(),"
        f" {repeat} runs each"
    )
    print(f"{'size':<6} {'runner':<9} {'median':>7} {'min':>7} {'max':>7} {'fits s':>7} {'eff':>5}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    for size, by_runner in runs.items():
        medians = {}
        for runner in RUNNERS:
            results = by_runner.get(runner, [])
            if not results:
                continue
            walls = [r["wall"] for r in results]
            fits = statistics.median(r["fit_seconds"] for r in results)
            med = medians[runner] = statistics.median(walls)
            # eff: the fits' own time (as timed in the workers) over cores x wall
            eff = fits / (cores * med)
            print(
                f"{size:<6} {runner:<9} {med:7.3f} {min(walls):7.3f} {max(walls):7.3f}"
                f" {fits:7.2f} {eff:5.2f}"
            )
            rows.append(
                {
                    "size": size,
                    "runner": runner,
                    "median": med,
                    "min": min(walls),
                    "max": max(walls),
                    "walls": walls,
                    "fit_seconds": fits,
                }
            )
        if "loky" in medians and "cheerful" in medians:
            ratio = medians["cheerful"] / medians["loky"]
            print(f"{size:<6} ratio cheerful / loky: {ratio:.3f}")
    for note in notes:
        print(f"- {note}")
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", default=",".join(SIZES), help="small, large or both (default)")
    p.add_argument("--repeat", type=int, default=5, help="runs per measurement (median shown)")
    p.add_argument("--json", metavar="PATH", help="also write every run as JSON")
    p.add_argument("--one", nargs=2, metavar=("RUNNER", "SIZE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.size = [s.strip() for s in args.size.split(",") if s.strip()]
    if bad := set(args.size) - set(SIZES):
        p.error(f"unknown size {', '.join(sorted(bad))}: choose from {', '.join(SIZES)}")
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one:
        runner, size = args.one
        print(json.dumps(one(runner, size)), flush=True)
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    before = load_average()
    notes: list[str] = []
    runs, mismatches = run_all(args.size, args.repeat, notes)
    notes.append(f"{cores} usable cores; load average {before} -> {load_average()}")
    notes.append("eff: the fits' own seconds (timed in the workers) / (cores x median wall)")
    versions = {d: package_version(d) for d in ("cheerful", "joblib", "scikit-learn", "numpy")}
    notes.append(
        f"python {platform.python_version()}; " + ", ".join(f"{k} {v}" for k, v in versions.items())
    )
    if mismatches:
        notes.append(f"!!! {mismatches} repetition(s) with different mean_test_score")
    else:
        notes.append("mean_test_score identical between loky and cheerful in every repetition")
    rows = render(runs, args.repeat, notes)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"cores": cores, "versions": versions, "runs": runs, "rows": rows, "notes": notes},
                f,
                indent=2,
            )
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
