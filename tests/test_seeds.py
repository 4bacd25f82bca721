"""seed=S: one reproducible random stream per task, whatever the plan or chunking."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import numpy as np
import pytest

import cheerful as cf

N = 16


def draws(_):
    return random.random(), float(np.random.random()), float(cf.task_rng().random())


@pytest.fixture(scope="module")
def reference():
    return cf.map(draws, range(N), plan=cf.sequential(), seed=42)


@pytest.mark.parametrize("workers", [2, 8])
@pytest.mark.parametrize("chunk_size", [1, 3, None])
def test_same_streams_under_every_plan_and_chunk_size(reference, workers, chunk_size):
    got = cf.map(draws, range(N), plan=cf.processes(workers), seed=42, chunk_size=chunk_size)
    assert got == reference


def test_same_streams_from_imap_and_starmap(reference, two):
    assert sorted(cf.imap(draws, range(N), plan=two, seed=42)) == list(enumerate(reference))
    assert cf.starmap(draws, [(i,) for i in range(N)], plan=two, seed=42) == reference


def test_every_task_and_every_generator_differs(reference):
    for column in zip(*reference, strict=True):
        assert len(set(column)) == N
    assert len({value for row in reference for value in row}) == 3 * N


def test_different_seeds_differ(reference, two):
    other = cf.map(draws, range(N), plan=two, seed=43)
    assert all(
        a != b
        for row, other_row in zip(reference, other, strict=True)
        for a, b in zip(row, other_row, strict=True)
    )


def test_seed_zero_is_a_seed(two):
    first = cf.map(draws, range(4), plan=two, seed=0)
    assert cf.map(draws, range(4), plan=cf.sequential(), seed=0) == first


def test_sequential_plan_leaves_the_callers_random_state_alone():
    random.seed(1)
    np.random.seed(1)
    py_state, np_state = random.getstate(), np.random.get_state()
    cf.map(draws, range(5), plan=cf.sequential(), seed=3)
    assert random.getstate() == py_state
    restored = np.random.get_state()
    assert restored[0] == np_state[0] and (restored[1] == np_state[1]).all()
    assert restored[2:] == np_state[2:]


def test_a_failing_task_does_not_break_the_streams(reference):
    def draws_or_fail(i):
        if i == 5:
            raise ValueError(i)
        return draws(i)

    got = cf.map(draws_or_fail, range(N), plan=cf.processes(2), seed=42, errors="return")
    assert got[:5] + got[6:] == reference[:5] + reference[6:]


def first_draw_once_both_workers_run(folder):
    """Wait until two workers run a task each, then draw from numpy's global generator."""
    Path(folder, str(os.getpid())).touch()
    deadline = time.monotonic() + 60
    while len(os.listdir(folder)) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    return os.getpid(), float(np.random.random())


def test_unseeded_fresh_workers_do_not_repeat_one_numpy_stream(tmp_path):
    fresh = cf.processes(2, start_method="fork")  # its own pool: newly forked workers
    with pytest.warns(cf.UnseededRandomWarning):
        args = [str(tmp_path)] * 2
        got = cf.map(first_draw_once_both_workers_run, args, plan=fresh, chunk_size=1)
    (pid_a, draw_a), (pid_b, draw_b) = got
    assert pid_a != pid_b
    assert draw_a != draw_b


def test_unseeded_task_rng_differs_between_tasks(two):
    with pytest.warns(cf.UnseededRandomWarning, match="without seed="):
        got = cf.map(lambda _: float(cf.task_rng().random()), range(8), plan=two, chunk_size=1)
    assert len(set(got)) == 8


def test_task_rng_outside_a_task_is_a_generator():
    assert isinstance(cf.task_rng(), np.random.Generator)


@pytest.mark.parametrize("draws", [0, 1, 623, 624, 625, 5000])
def test_numpys_generator_is_read_in_place_as_get_state_gives_it(draws):
    """The watch reads numpy's global generator from its memory (a microsecond, not
    get_state's fifty): the same position and key, and any draw moves it."""
    np = pytest.importorskip("numpy")
    from cheerful.rngwatch import RandomWatch, _numpy_position

    watch = RandomWatch()
    np.random.random(draws)
    state = np.random.get_state(legacy=False)["state"]
    assert _numpy_position() == (state["pos"], bytes(memoryview(state["key"]))[:64])
    assert watch.moved() is (draws > 0)


@pytest.mark.parametrize(
    "draw",
    [
        lambda r: r.random(),
        lambda r: [r.getrandbits(32) for _ in range(624)],  # the index comes round again
        lambda r: [r.getrandbits(32) for _ in range(625)],
        lambda r: r.gauss(),  # the spare: only it changes
        lambda r: r.seed(1),
    ],
)
def test_any_use_of_pythons_global_generator_moves_the_watch(draw):
    from cheerful.rngwatch import RandomWatch

    random.gauss()  # a spare gaussian waits: the second draw above changes only that
    watch = RandomWatch()
    assert not watch.moved()
    draw(random)
    assert watch.moved()
