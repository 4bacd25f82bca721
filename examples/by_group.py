"""One linear model per group, fitted in parallel with cheerful.

The data are R's classic ``mtcars`` (32 cars, 1973-74 models). For each number of
forward gears (3, 4 or 5) we fit, by ordinary least squares,

    mpg = b0 + b1 * wt + b2 * hp + error

(``wt`` in 1000 lb, ``hp`` gross horsepower), first with a plain loop, then with
``cf.map`` on all local cores, and check that both give the same coefficients.

Run it from anywhere: ``python examples/by_group.py``.
"""

import csv
from pathlib import Path

import numpy as np

import cheerful as cf

DATA = Path(__file__).resolve().parent / "data" / "mtcars.csv"
PREDICTORS = ("wt", "hp")


def read_groups(path: Path) -> dict[int, list[dict[str, str]]]:
    """The rows of the CSV file, split by number of gears: {3: [...], 4: [...], 5: [...]}."""
    groups: dict[int, list[dict[str, str]]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            groups.setdefault(int(row["gear"]), []).append(row)
    return dict(sorted(groups.items()))


def fit(rows: list[dict[str, str]]) -> np.ndarray:
    """Least-squares coefficients (intercept, wt, hp) of mpg on one group's rows."""
    y = np.array([float(r["mpg"]) for r in rows])
    # Design matrix: a column of ones for the intercept, then one column per predictor.
    X = np.column_stack([np.ones(len(rows))] + [[float(r[p]) for r in rows] for p in PREDICTORS])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    return coef


def main() -> None:
    groups = read_groups(DATA)

    # The plain loop: one fit after another.
    sequential = [fit(rows) for rows in groups.values()]
    # The same loop, one task per group, spread over the local cores.
    parallel = cf.map(fit, list(groups.values()))

    print(f"mpg ~ 1 + {' + '.join(PREDICTORS)}, by number of gears")
    print(f"{'gear':>4} {'n':>3} {'intercept':>10}" + "".join(f"{p:>10}" for p in PREDICTORS))
    for (gear, rows), coef in zip(groups.items(), parallel, strict=True):
        print(f"{gear:>4} {len(rows):>3}" + "".join(f"{c:>10.4f}" for c in coef))

    # Same data, same arithmetic: the parallel fits are bit-for-bit the sequential ones.
    for seq, par in zip(sequential, parallel, strict=True):
        assert np.array_equal(seq, par), (seq, par)
    print("cf.map and the plain loop agree exactly.")


if __name__ == "__main__":
    main()
