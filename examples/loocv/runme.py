"""One fold of leave-one-out cross-validation (LOOCV) of a random forest, as a script task.

cheerful runs this script once per env of ``envs.jsonl``; each env gives ``i``, the row
left out. The forest is fit on every other row of scikit-learn's wine data (178 wines,
13 measurements, 3 cultivars) and predicts row ``i``; the top-level ``result`` is what
the task returns::

    cheerful run examples/loocv/runme.py --envs examples/loocv/envs.jsonl

To try one fold by hand: ``python examples/loocv/runme.py 5``.
"""

import sys

import numpy as np
from sklearn.datasets import load_wine
from sklearn.ensemble import RandomForestClassifier

i = globals().get("i")  # cheerful provides it, from the task's env
if i is None:
    if __name__ == "__main__" and len(sys.argv) == 2 and sys.argv[1].isdigit():
        i = int(sys.argv[1])
    else:
        sys.exit(
            "runme.py is one task of a cheerful job: it needs `i`, the row to leave out.\n"
            "Run every fold:  cheerful run examples/loocv/runme.py --envs examples/loocv/envs.jsonl\n"
            "Or one by hand:  python examples/loocv/runme.py 5"
        )

X, y = load_wine(return_X_y=True)
train = np.arange(len(y)) != i
forest = RandomForestClassifier(n_estimators=50, random_state=0)
forest.fit(X[train], y[train])
pred = forest.predict(X[i : i + 1])[0]
print(f"row {i}: true class {y[i]}, predicted {pred}")

result = {"i": int(i), "y": int(y[i]), "pred": int(pred)}
