"""The behaviour every plan keeps, run once per plan kind (see ``conftest.PLAN_KINDS``)."""

from __future__ import annotations

import os
import random
from concurrent import futures

import numpy as np
import pytest

import cheerful as cf


class ContractError(Exception):
    """An exception class importable by the workers, so it travels by reference."""


def square(x):
    return x * x


def add(a, b):
    return a + b


def fail_on_three(x):
    if x == 3:
        raise ContractError(f"bad input {x}")
    return x


def draws(_):
    return random.random(), float(np.random.random()), float(cf.task_rng().random())


def nested_sum(n):
    return sum(cf.map(square, range(n)))


def test_results_come_back_in_input_order(plan_factory):
    assert cf.map(square, range(50), plan=plan_factory()) == [x * x for x in range(50)]


def test_lambdas_and_closures_run(plan_factory):
    offset = 10
    assert cf.map(lambda x: x + offset, [1, 2, 3], plan=plan_factory()) == [11, 12, 13]


def test_empty_input_gives_an_empty_list(plan_factory):
    assert cf.map(square, [], plan=plan_factory()) == []


def test_starmap_unpacks_argument_tuples(plan_factory):
    pairs = [(i, 2 * i) for i in range(20)]
    assert cf.starmap(add, pairs, plan=plan_factory()) == [3 * i for i in range(20)]


def test_imap_yields_every_index_once(plan_factory):
    pairs = list(cf.imap(square, range(30), plan=plan_factory(), chunk_size=4))
    assert sorted(pairs) == [(i, i * i) for i in range(30)]


@pytest.mark.parametrize("lazy", [False, True], ids=["list", "generator"])
def test_ordered_imap_yields_the_values_in_input_order(plan_factory, lazy):
    items = (i for i in range(30)) if lazy else range(30)
    got = cf.imap(square, items, plan=plan_factory(), chunk_size=4, ordered=True)
    assert list(got) == [i * i for i in range(30)]


def test_ordered_imap_yields_every_value_before_a_failure_then_raises(plan_factory):
    got = cf.imap(fail_on_three, range(6), plan=plan_factory(), chunk_size=2, ordered=True)
    assert [next(got) for _ in range(3)] == [fail_on_three(i) for i in range(3)]
    with pytest.raises(ContractError, match="bad input 3"):
        next(got)


@pytest.mark.parametrize("chunk_size", [1, 7, 1000, None])
def test_chunk_sizes_keep_the_order(plan_factory, chunk_size):
    got = cf.map(square, range(40), plan=plan_factory(), chunk_size=chunk_size)
    assert got == [x * x for x in range(40)]


def test_error_rises_as_its_own_type_with_cause_and_index(plan_factory):
    with pytest.raises(ContractError, match="bad input 3") as info:
        cf.map(fail_on_three, range(6), plan=plan_factory(), chunk_size=2)
    assert "fail_on_three" in str(info.value.__cause__)
    assert any("task 3" in note for note in info.value.__notes__)


def test_errors_return_puts_failures_in_their_slots(plan_factory):
    got = cf.map(fail_on_three, range(6), plan=plan_factory(), errors="return")
    failure = got[3]
    assert isinstance(failure, cf.Failure)
    assert failure.index == 3
    assert isinstance(failure.exception, ContractError)
    assert "fail_on_three" in failure.traceback
    assert got[:3] + got[4:] == [0, 1, 2, 4, 5]


@pytest.mark.parametrize("chunk_size", [1, 3, None])
def test_seeded_streams_match_the_sequential_plan(plan_factory, chunk_size):
    reference = cf.map(draws, range(12), plan=cf.sequential(), seed=7)
    got = cf.map(draws, range(12), plan=plan_factory(), seed=7, chunk_size=chunk_size)
    assert got == reference


def test_progress_callable_sees_start_advance_finish(plan_factory):
    events = []
    cf.map(square, range(10), plan=plan_factory(), progress=lambda **kw: events.append(kw))
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "finish" and "advance" in kinds
    assert events[-1]["done"] == events[-1]["total"] == 10


def test_executor_submit_and_map(plan_factory):
    with cf.Executor(plan_factory()) as ex:
        fut = ex.submit(add, 2, b=3)
        assert isinstance(fut, futures.Future)
        assert fut.result(timeout=60) == 5
        assert list(ex.map(square, range(10), timeout=60)) == [x * x for x in range(10)]


def test_executor_future_carries_the_task_error(plan_factory):
    with cf.Executor(plan_factory()) as ex:
        exc = ex.submit(fail_on_three, 3).exception(timeout=60)
    assert isinstance(exc, ContractError)
    assert "fail_on_three" in str(exc.__cause__)


def test_nested_map_inside_a_task(plan_factory):
    with cf.plan(plan_factory(), cf.sequential()):
        assert cf.map(nested_sum, [3, 4, 5], chunk_size=1) == [5, 14, 30]


def test_nested_map_runs_on_the_next_level(plan_factory):
    def inner_pids(_):
        return os.getpid(), set(cf.map(lambda _: os.getpid(), range(4), chunk_size=1))

    with cf.plan(plan_factory(), cf.processes(1)):
        for outer, inner in cf.map(inner_pids, range(2), chunk_size=1):
            assert len(inner) == 1 and outer not in inner
