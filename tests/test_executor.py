"""cf.Executor: a real concurrent.futures.Executor on every plan."""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent import futures
from pathlib import Path

import numpy as np
import pytest

import cheerful as cf

TIMEOUT = 60
PLANS = [cf.sequential(), cf.processes(2)]
IDS = ["sequential", "processes"]


def square(x):
    return x * x


def draws():
    return random.random(), float(np.random.random()), float(cf.task_rng().random())


class RebuildFails:
    """Pickles fine, but cannot be rebuilt on the other side."""

    def __reduce__(self):
        return (_refuse, ())


def _refuse():
    raise RuntimeError("refusing to be rebuilt")


def wait_for(path: Path, timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def blocker(started: str, release: str) -> str:
    """Say it started, then hold its worker until ``release`` exists."""
    Path(started).touch()
    assert wait_for(Path(release))
    return started


@pytest.fixture
def held(tmp_path):
    """An Executor on processes(2) with both workers held by a blocking call."""
    release = tmp_path / "release"
    with cf.Executor(cf.processes(2)) as ex:
        marks = [tmp_path / f"started-{i}" for i in range(2)]
        blockers = [ex.submit(blocker, str(m), str(release)) for m in marks]
        assert all(wait_for(m) for m in marks)
        yield ex, blockers, release
        release.touch()


def test_is_a_concurrent_futures_executor():
    assert issubclass(cf.Executor, futures.Executor)


@pytest.mark.parametrize("plan", PLANS, ids=IDS)
def test_hands_out_stock_futures(plan):
    with cf.Executor(plan) as ex:
        fut = ex.submit(pow, 2, 10)
        assert type(fut) is futures.Future
        assert fut.result(timeout=TIMEOUT) == 1024


@pytest.mark.parametrize("plan", PLANS, ids=IDS)
def test_wait_and_as_completed(plan):
    with cf.Executor(plan) as ex:
        futs = {ex.submit(square, i): i for i in range(20)}
        done, not_done = futures.wait(futs, timeout=TIMEOUT)
        assert len(done) == 20 and not not_done
        for fut in futures.as_completed(futs, timeout=TIMEOUT):
            assert fut.result() == futs[fut] ** 2


@pytest.mark.parametrize("plan", PLANS, ids=IDS)
@pytest.mark.parametrize("chunksize", [1, 4])
def test_map_keeps_order(plan, chunksize):
    with cf.Executor(plan) as ex:
        got = ex.map(pow, range(10), [2] * 10, timeout=TIMEOUT, chunksize=chunksize)
        assert list(got) == [x * x for x in range(10)]


@pytest.mark.parametrize("plan", PLANS, ids=IDS)
def test_kwargs_lambdas_and_errors(plan):
    with cf.Executor(plan) as ex:
        assert ex.submit(lambda a, *, b: a - b, 5, b=2).result(timeout=TIMEOUT) == 3
        exc = ex.submit(int, "not a number").exception(timeout=TIMEOUT)
    assert isinstance(exc, ValueError)
    assert "not a number" in str(exc.__cause__)


@pytest.mark.parametrize("plan", PLANS, ids=IDS)
def test_seeded_calls_match_cf_map(plan):
    reference = cf.map(lambda _: draws(), range(6), plan=cf.sequential(), seed=11)
    with cf.Executor(plan, seed=11) as ex:
        got = [f.result(timeout=TIMEOUT) for f in [ex.submit(draws) for _ in range(6)]]
    assert got == reference


@pytest.mark.parametrize("plan", PLANS, ids=IDS)
def test_submit_after_shutdown_raises(plan):
    ex = cf.Executor(plan)
    ex.submit(square, 1).result(timeout=TIMEOUT)
    ex.shutdown()
    with pytest.raises(RuntimeError):
        ex.submit(square, 2)


def test_shutdown_without_any_submission():
    cf.Executor(cf.processes(2)).shutdown()


def test_the_plan_in_force_is_the_default():
    with cf.plan(cf.sequential()), cf.Executor() as ex:
        assert ex.submit(os.getpid).result(timeout=TIMEOUT) == os.getpid()
    with cf.Executor() as ex:
        assert ex.submit(os.getpid).result(timeout=TIMEOUT) != os.getpid()


def test_queued_futures_can_be_cancelled(held):
    ex, blockers, _ = held
    queued = [ex.submit(square, i) for i in range(6)]
    assert all(f.cancel() for f in queued)
    assert all(f.cancelled() for f in queued)
    assert not any(b.cancel() for b in blockers)


def test_running_futures_finish_after_others_are_cancelled(held):
    ex, blockers, release = held
    queued = [ex.submit(square, i) for i in range(6)]
    queued[2].cancel()
    release.touch()
    assert all(b.result(timeout=TIMEOUT) for b in blockers)
    results = [f.result(timeout=TIMEOUT) for f in queued if not f.cancelled()]
    assert results == [0, 1, 9, 16, 25]


def test_shutdown_can_cancel_queued_futures(held):
    ex, blockers, release = held
    queued = [ex.submit(square, i) for i in range(6)]
    ex.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    release.touch()
    ex.shutdown(wait=True)
    assert all(b.done() and not b.cancelled() for b in blockers)
    assert all(b.exception() is None for b in blockers)
    with pytest.raises(RuntimeError):
        ex.submit(square, 1)


def test_an_unpicklable_argument_fails_only_its_future():
    import threading

    with cf.Executor(cf.processes(2)) as ex:
        good = [ex.submit(square, i) for i in range(4)]
        bad = ex.submit(square, threading.Lock())
        assert isinstance(bad.exception(timeout=TIMEOUT), cf.SerializationError)
        assert [f.result(timeout=TIMEOUT) for f in good] == [0, 1, 4, 9]
        assert ex.submit(square, 5).result(timeout=TIMEOUT) == 25


def test_a_call_that_cannot_be_rebuilt_fails_without_hanging():
    with cf.Executor(cf.processes(2)) as ex:
        bad = ex.submit(abs, RebuildFails())
        good = [ex.submit(abs, -i) for i in range(5)]
        assert isinstance(bad.exception(timeout=TIMEOUT), cf.CheerfulError)
        assert [f.result(timeout=TIMEOUT) for f in good] == [0, 1, 2, 3, 4]


def test_a_crashing_call_fails_alone():
    with cf.Executor(cf.processes(2)) as ex:
        futs = [ex.submit(square, i) for i in range(10)]
        crash = ex.submit(os._exit, 3)
        more = [ex.submit(square, i) for i in range(10, 20)]
        exc = crash.exception(timeout=TIMEOUT)
        assert isinstance(exc, cf.WorkerCrashed) and exc.exitcode == 3
        assert [f.result(timeout=TIMEOUT) for f in futs + more] == [i * i for i in range(20)]
        assert ex.submit(square, 7).result(timeout=TIMEOUT) == 49


def test_nested_map_inside_a_submitted_call():
    def inner(n):
        return cf.map(square, range(n))

    with cf.plan(cf.processes(2), cf.processes(1)), cf.Executor() as ex:
        assert ex.submit(inner, 4).result(timeout=TIMEOUT) == [0, 1, 4, 9]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_executors_leave_no_file_descriptors_behind(two):
    with cf.Executor(two) as ex:  # warm up what multiprocessing keeps for good
        ex.submit(abs, 1).result(timeout=TIMEOUT)
    before = open_fds()
    for _ in range(20):
        with cf.Executor(cf.sequential()) as ex:
            ex.submit(abs, 1).result(timeout=TIMEOUT)
        cf.Executor(two).shutdown()
    with cf.Executor(two) as ex:
        ex.submit(abs, 1).result(timeout=TIMEOUT)
    assert open_fds() <= before + 2


def test_a_second_shutdown_writes_into_no_reused_descriptor(two, tmp_path):
    ex = cf.Executor(two)
    ex.submit(abs, 1).result(timeout=TIMEOUT)
    ex.shutdown()
    files = [open(tmp_path / f"file-{i}", "w") for i in range(8)]  # noqa: SIM115
    ex.shutdown()  # as the exit handler does for every executor still referenced
    for f in files:
        f.close()
    assert all((tmp_path / f"file-{i}").read_text() == "" for i in range(8))


def test_shutdown_after_every_queued_call_was_cancelled_returns(tmp_path):
    release, started = tmp_path / "release", tmp_path / "started"
    ex = cf.Executor(cf.processes(1))
    try:
        blockers = [ex.submit(blocker, str(started), str(release))]
        assert wait_for(started)
        assert all(f.cancel() for f in [ex.submit(square, i) for i in range(6)])
        ex.shutdown(wait=False)
        release.touch()
        closer = threading.Thread(target=ex.shutdown, daemon=True)
        closer.start()
        closer.join(TIMEOUT)
        assert not closer.is_alive(), "shutdown(wait=True) hangs"
        assert all(b.result(timeout=TIMEOUT) for b in blockers)
    finally:
        release.touch()
        ex.shutdown(wait=False)  # wakes a stuck manager, so the test run can end
