"""The ``"cheerful"`` joblib backend with real scikit-learn: the same scores as joblib's
own backend, ``n_jobs`` honoured, nested joblib calls on cheerful's inner level, errors as
the task raised them."""

from __future__ import annotations

import os

import numpy as np
import pytest

joblib = pytest.importorskip("joblib")
sklearn = pytest.importorskip("sklearn")

from sklearn.datasets import load_iris  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

import cheerful as cf  # noqa: E402
import cheerful.joblib  # noqa: E402, F401 - registers the backend

SCORES = ("split0_test_score", "split4_test_score", "mean_test_score", "rank_test_score")


def grid_search(backend: str, n_jobs: int = -1):
    X, y = load_iris(return_X_y=True)
    grid = {"C": [0.1, 1, 10, 100], "gamma": [0.01, 0.1, 1, "scale", "auto"]}
    search = GridSearchCV(SVC(), grid, cv=5, n_jobs=n_jobs)
    with joblib.parallel_config(backend=backend):
        search.fit(X, y)
    return search.cv_results_


def test_grid_search_gives_the_scores_of_joblibs_own_backend(restore_plan):
    expected = grid_search("loky")
    with cf.plan(cf.processes(2)):
        got = grid_search("cheerful")
    for key in SCORES:
        assert np.array_equal(got[key], expected[key]), key
    assert got["params"] == expected["params"]


def pid_and_cores(_):
    return os.getpid(), os.environ.get("CHEERFUL_CORES")


def test_n_jobs_is_honoured_and_minus_one_is_the_plans_capacity(restore_plan):
    with cf.plan(cf.processes(3)), joblib.parallel_config(backend="cheerful"):
        assert joblib.Parallel(n_jobs=-1)._effective_n_jobs() == 3
        assert joblib.Parallel(n_jobs=-2)._effective_n_jobs() == 2
        assert joblib.Parallel(n_jobs=8)._effective_n_jobs() == 3  # no more than the plan has
        two = joblib.Parallel(n_jobs=2)(joblib.delayed(pid_and_cores)(i) for i in range(12))
    assert len({pid for pid, _ in two}) <= 2 and os.getpid() not in {p for p, _ in two}


def inner_parallel(_):
    """A task that itself calls joblib with all cores, as a nested scikit-learn fit does."""
    inner = joblib.Parallel(n_jobs=-1)(joblib.delayed(os.getpid)() for _ in range(4))
    return os.getpid(), sorted(set(inner))


def test_nested_joblib_calls_follow_cheerfuls_levels(restore_plan):
    with cf.plan(cf.processes(2)), joblib.parallel_config(backend="cheerful"):
        flat = joblib.Parallel(n_jobs=2)(joblib.delayed(inner_parallel)(i) for i in range(2))
    for outer, inner in flat:  # no inner level: the task's calls run in the task, one by one
        assert inner == [outer]
    with cf.plan(cf.processes(2), cf.processes(2)), joblib.parallel_config(backend="cheerful"):
        nested = joblib.Parallel(n_jobs=2)(joblib.delayed(inner_parallel)(i) for i in range(2))
    for outer, inner in nested:  # the inner level: two processes of the task's own
        assert len(inner) == 2 and outer not in inner


def fails(x):
    if x == 3:
        raise KeyError(f"missing {x}")
    return x


def test_a_failing_call_raises_its_own_error(restore_plan):
    with cf.plan(cf.processes(2)), joblib.parallel_config(backend="cheerful"):
        with pytest.raises(KeyError, match="missing 3"):
            joblib.Parallel(n_jobs=2)(joblib.delayed(fails)(i) for i in range(8))
        assert joblib.Parallel(n_jobs=2)(joblib.delayed(fails)(i) for i in (0, 1)) == [0, 1]


def test_a_plan_that_is_not_a_plan_is_refused():
    with pytest.raises(cf.ConfigError, match="plan such as"), joblib.parallel_config(
        backend="cheerful", plan="processes"
    ):
        joblib.Parallel(n_jobs=2)(joblib.delayed(abs)(i) for i in range(2))


def test_a_sequential_plan_runs_in_the_caller(restore_plan):
    with cf.plan(cf.sequential()), joblib.parallel_config(backend="cheerful"):
        pids = joblib.Parallel(n_jobs=-1)(joblib.delayed(os.getpid)() for _ in range(3))
    assert set(pids) == {os.getpid()}
