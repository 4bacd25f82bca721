"""What tasks print, warn and log comes back to the caller, in task order, with their
results; unseeded random draws are warned about once per map. Run on every plan kind
that relays output (see ``conftest.PLAN_KINDS``): a Dask cluster's workers keep what
tasks print in their own logs, so that kind is skipped with that reason; a durable job
relays what its tasks printed (their stored logs, stdout and stderr as one text), not
warnings or log records as such, so it runs the tests of printed text only.
"""

from __future__ import annotations

import logging
import random
import sys
import time
import warnings

import pytest
from kinds import only_kinds

import cheerful as cf
from cheerful.taskio import OUTPUT_CAP

RELAYING = ("sequential", "processes", "ssh")
PRINTING = (*RELAYING, "durable")  # a durable job's logs come back as printed text


class TaskWarning(UserWarning):
    """A warning class the workers can import, so it travels by reference."""


relaying = only_kinds(RELAYING, "{kind} workers keep what tasks print in their own logs")
printing = only_kinds(PRINTING, "{kind} workers keep what tasks print in their own logs")


def talks_in_pieces(i):
    sys.stdout.write(f"task {i} ")
    time.sleep(0.02 * (5 - i))  # later tasks finish first
    sys.stdout.write("says ")
    print("hello")
    return i


def test_prints_come_back_whole_and_in_task_order(printing, capsys):
    assert cf.map(talks_in_pieces, range(6), plan=printing, chunk_size=1) == list(range(6))
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"task {i} says hello" for i in range(6)]


def warns(i):
    warnings.warn(f"odd input {i}", TaskWarning, stacklevel=1)
    return i


def test_warnings_come_back_with_their_category_once_per_task(relaying):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        cf.map(warns, range(4), plan=relaying, chunk_size=2)
    ours = [w for w in seen if issubclass(w.category, TaskWarning)]
    assert [str(w.message).split(" (")[0] for w in ours] == [f"odd input {i}" for i in range(4)]


def test_a_warning_filtered_into_an_error_raises_in_the_caller(relaying):
    with warnings.catch_warnings(), pytest.raises(TaskWarning, match="odd input 0"):
        warnings.simplefilter("error", TaskWarning)
        cf.map(warns, range(2), plan=relaying, chunk_size=1)


def logs(i):
    logging.getLogger("cheerful.test.tasks").warning("record of task %d", i)
    return i


def test_log_records_reach_the_callers_handlers(relaying, caplog):
    with caplog.at_level(logging.INFO, logger="cheerful.test.tasks"):
        cf.map(logs, range(3), plan=relaying, chunk_size=1)
    got = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert got == [("cheerful.test.tasks", "WARNING", f"record of task {i}") for i in range(3)]


def prints_then_fails(i):
    print(f"about to look at {i}")
    if i == 2:
        raise ValueError("two")
    return i


def test_a_failure_carries_what_its_task_printed(printing, capsys):
    got = cf.map(prints_then_fails, range(4), plan=printing, chunk_size=1, errors="return")
    assert isinstance(got[2], cf.Failure)
    assert got[2].output.text() == "about to look at 2\n"
    assert capsys.readouterr().out.splitlines() == [f"about to look at {i}" for i in range(4)]


def test_output_before_a_raised_failure_comes_out_first(printing, capsys):
    with pytest.raises(ValueError, match="two"):
        cf.map(prints_then_fails, range(3), plan=printing, chunk_size=1)
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == [f"about to look at {i}" for i in range(3)]


def prints_a_lot(_):
    print("x" * (OUTPUT_CAP + 10))
    return 1


def test_a_task_output_is_capped_and_the_cut_is_said(relaying, capsys):
    got = cf.map(prints_a_lot, [0], plan=relaying, errors="return")
    assert got == [1]
    captured = capsys.readouterr()
    if request_kind(relaying) == "sequential":  # goes out live, whole; nothing to cut
        assert len(captured.out) == OUTPUT_CAP + 11
    else:
        assert len(captured.out) == OUTPUT_CAP
        assert "11 more characters of this task's output were cut" in captured.err


def request_kind(plan: cf.Plan) -> str:
    return type(plan).__name__.removesuffix("Plan").lower()


def inner_talks(n):
    return sum(cf.map(talks_in_pieces, range(n), chunk_size=1))


def test_output_of_an_inner_level_comes_back_in_order(relaying, capsys):
    with cf.plan(relaying, cf.processes(2)):
        assert cf.map(inner_talks, [2, 3], chunk_size=1) == [1, 3]
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"task {i} says hello" for i in (0, 1, 0, 1, 2)]


def draws(_):
    return random.random()


def test_unseeded_draws_are_warned_about_once_per_map(plan_factory, plan_kind):
    if plan_kind == "durable":
        pytest.skip("a durable job's stored results do not record random draws (yet)")
    with pytest.warns(cf.UnseededRandomWarning, match="without seed=") as seen:
        cf.map(draws, range(6), plan=plan_factory(), chunk_size=1)
    assert len([w for w in seen if w.category is cf.UnseededRandomWarning]) == 1


def draws_from_numpy(x):
    import numpy as np

    if x == 4:
        np.random.seed(4)  # reseeding moves the generator too
    return float(np.random.random()) if x == 2 else x


@pytest.mark.parametrize("task", [2, 4])
def test_a_task_that_draws_from_numpys_global_generator_is_warned_about(
    plan_factory, plan_kind, task
):
    pytest.importorskip("numpy")
    if plan_kind == "durable":
        pytest.skip("a durable job's stored results do not record random draws (yet)")
    with pytest.warns(cf.UnseededRandomWarning, match="without seed="):
        cf.map(draws_from_numpy, [0, 1, task, 5], plan=plan_factory(), chunk_size=1)


def test_seeded_or_random_free_maps_say_nothing(plan_factory):
    with warnings.catch_warnings():
        warnings.simplefilter("error", cf.UnseededRandomWarning)
        cf.map(draws, range(6), plan=plan_factory(), chunk_size=1, seed=3)
        cf.map(abs, range(6), plan=plan_factory(), chunk_size=1)
