"""Progress from inside tasks (``cf.task_progress``) moves the caller's bar or callback
while the tasks run, from an inner level of a nested map too. Run on every plan kind that
reports live (see ``conftest.PLAN_KINDS``): Dask and durable jobs report finished tasks
only, so those kinds are skipped with that reason.
"""

from __future__ import annotations

import time

import pytest
from kinds import only_kinds

import cheerful as cf

LIVE = ("sequential", "processes", "ssh")


live = only_kinds(LIVE, "{kind} reports finished tasks only, not progress from inside them")


def steps(i):
    for step in range(6):
        time.sleep(0.25)
        cf.task_progress(step + 1, 6)
    return i


def _heard(events: list[dict]) -> list[float]:
    return [e["done"] + e.get("running", 0.0) for e in events if e["event"] == "advance"]


def test_task_progress_moves_the_callers_progress_while_tasks_run(live):
    events: list[dict] = []
    got = cf.map(steps, [7], plan=live, progress=lambda **e: events.append(e))
    assert got == [7]
    heard = _heard(events)
    assert any(0 < h < 1 for h in heard), heard  # a share of the task, before it finished
    assert heard == sorted(heard)  # it never goes back
    assert events[-1]["done"] == 1


def inner_steps(n):
    return sum(cf.map(steps, range(n), chunk_size=1))


def test_an_inner_map_moves_the_outer_task_s_share(live):
    events: list[dict] = []
    with cf.plan(live, cf.sequential()):
        cf.map(inner_steps, [1], progress=lambda **e: events.append(e))
    heard = _heard(events)
    assert any(0 < h < 1 for h in heard), heard  # the inner map's progress, heard above


def test_outside_a_task_it_does_nothing():
    cf.task_progress(1, 2)  # no task, no bar: nothing to tell, no error


def test_a_total_that_is_not_positive_is_refused(live):
    with pytest.raises(cf.ConfigError, match="positive total"):
        cf.map(lambda _: cf.task_progress(1, 0), [0], plan=live)
