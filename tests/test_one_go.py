"""A chunk run in one go (cheerful.runner): as fast as ``list(map(fn, items))``, yet every
outcome, print, warning, progress report and crash lands on its own task."""

from __future__ import annotations

import gc
import logging
import os
import warnings
from contextlib import contextmanager

import pytest

import cheerful as cf
from cheerful.runner import ONE_GO, run_chunk
from cheerful.task import Chunk, current_task
from cheerful.taskio import Catcher, log_handler

N = 40


@contextmanager
def catching():
    """A worker's catcher, for this test only: its streams, warnings and the "one_go" log."""
    catcher = Catcher().install(streams_only=True)
    logger = logging.getLogger("one_go")
    handler = log_handler(catcher)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = catcher._warning
            yield catcher
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        catcher.uninstall()


@contextmanager
def no_garbage_collection():
    """The garbage of earlier tests, collected mid-run, may warn (an unclosed file's
    ResourceWarning): the run would rightly pin that on a task and go task by task."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def run(fn, items=range(N), *, star=False, seed=None):
    marks: list[int] = []
    with no_garbage_collection(), catching() as catcher:
        chunk = Chunk(0, items, star)
        result = run_chunk(fn, chunk, seed, mark=marks.append, catcher=catcher, one_go=True)
    return result, marks


def twice_or_fail(x):
    if x % 7 == 3:
        raise ValueError(f"bad {x}")
    return 2 * x


@pytest.mark.parametrize("items", [range(N), list(range(N)), tuple(range(N))])
def test_failures_land_on_their_own_tasks_and_the_rest_run_in_one_go(items):
    result, marks = run(twice_or_fail, items)
    assert marks == [ONE_GO]  # no task was marked one by one
    assert sorted(result.errors) == [x for x in range(N) if x % 7 == 3]
    assert "bad 10" in result.errors[10].message
    assert [v for i, v in enumerate(result.values) if i not in result.errors] == [
        2 * x for x in range(N) if x % 7 != 3
    ]


def test_starmap_items_run_in_one_go():
    result, marks = run(pow, [(x, 2) for x in range(N)], star=True)
    assert marks == [ONE_GO] and result.values == [x * x for x in range(N)]


def says_something_at_twelve(x):
    if x == 12:
        print("twelve")
        logging.getLogger("one_go").warning("logged at %d", x)
    if x >= 20:
        print(f"late {x}")
    return x


def test_the_first_print_finds_its_task_and_the_rest_runs_task_by_task():
    result, marks = run(says_something_at_twelve)
    assert marks == [ONE_GO, *range(12, N)]
    assert result.values == list(range(N))
    assert sorted(result.outputs) == [12, *range(20, N)]
    assert result.outputs[12].text() == "twelve\n"
    assert result.outputs[31].text() == "late 31\n"
    (log,) = [e for e in result.outputs[12].events if e[0] == "log"]
    assert log[1]["msg"] == "logged at 12"


def warns_from_five(x):
    if x >= 5:
        warnings.warn("same place every time", RuntimeWarning, stacklevel=1)
    return x


def test_a_warning_shows_once_per_task_after_a_run_in_one_go():
    result, marks = run(warns_from_five)
    assert marks == [ONE_GO, *range(5, N)]
    assert sorted(result.outputs) == list(range(5, N))  # each task its own warning


def reads_its_index(x):
    return current_task().index if x % 10 == 9 else None


def test_a_task_that_reads_its_index_gets_its_own():
    result, marks = run(reads_its_index)
    assert [v for v in result.values if v is not None] == [9, 19, 29, 39]
    assert marks[:2] == [ONE_GO, 9]


def reports_progress(x):
    if x == 30:
        cf.task_progress(1, 2)
    return x


def test_progress_from_a_task_names_that_task():
    heard: list[tuple[int, float]] = []
    marks: list[int] = []
    result = run_chunk(
        reports_progress,
        Chunk(0, range(N)),
        mark=marks.append,
        on_progress=lambda share: heard.append((marks[-1], share)),
        one_go=True,
    )
    assert heard == [(30, 0.5)] and result.values == list(range(N))


def draws(x):
    return cf.task_rng().integers(1 << 62) if x in (3, 4) else x


def test_each_task_that_draws_gets_a_generator_of_its_own():
    result, _ = run(draws)
    assert result.values[3] != result.values[4] and result.unseeded


def test_a_seeded_chunk_and_a_chunk_of_one_run_task_by_task():
    _, marks = run(abs, seed=5)
    assert marks == list(range(N))
    _, marks = run(abs, range(1))
    assert marks == [0]


def exits_at_23(x):
    if x == 23:
        os._exit(7)
    return x


def test_a_worker_dying_in_a_run_in_one_go_fails_only_its_task():
    out = cf.map(exits_at_23, range(200), plan=cf.processes(2), chunk_size=50, errors="return")
    failed = [i for i, v in enumerate(out) if isinstance(v, cf.Failure)]
    assert failed == [23]
    assert isinstance(out[23].exception, cf.WorkerCrashed) and out[23].exception.exitcode == 7
    assert [v for v in out if not isinstance(v, cf.Failure)] == [x for x in range(200) if x != 23]
