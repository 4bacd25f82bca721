"""cf.Executor: a real concurrent.futures.Executor on every plan."""

from __future__ import annotations

import asyncio
import os
import pickle
import random
import signal
import subprocess
import sys
import threading
import time
from concurrent import futures
from concurrent.futures.process import BrokenProcessPool
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
def test_hands_out_standard_futures(plan):
    with cf.Executor(plan) as ex:
        fut = ex.submit(pow, 2, 10)
        assert isinstance(fut, futures.Future)  # one that also replays the call's output
        assert asyncio.run(_awaited(fut)) == 1024
        assert fut.result(timeout=TIMEOUT) == 1024


async def _awaited(fut):
    return await asyncio.wrap_future(fut)


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


# --- faults: each fails its own call, as ProcessPoolExecutor reports them ---------------


class PickleFails:
    """Cannot be pickled at all."""

    def __reduce__(self):
        raise pickle.PicklingError("not today")


def make_rebuild_fails(_=None):
    return RebuildFails()


def pid_then_nap(path: str) -> int:
    Path(path + ".part").write_text(str(os.getpid()))
    os.replace(path + ".part", path)  # whole when seen: the test reads it once it exists
    time.sleep(60)
    return os.getpid()


def test_a_result_that_cannot_be_unpickled_fails_its_call_and_the_executor_goes_on():
    with cf.Executor(cf.processes(2)) as ex:
        bad = ex.submit(make_rebuild_fails)
        exc = bad.exception(timeout=TIMEOUT)
        assert isinstance(exc, cf.SerializationError) and isinstance(exc, BrokenProcessPool)
        assert "cannot be unpickled in the caller" in str(exc)
        assert ex.submit(square, 6).result(timeout=TIMEOUT) == 36
        assert list(ex.map(square, range(5), timeout=TIMEOUT)) == [0, 1, 4, 9, 16]


def test_pickling_errors_are_pickling_errors():
    with cf.Executor(cf.processes(2)) as ex:
        exc = ex.submit(abs, PickleFails()).exception(timeout=TIMEOUT)
        assert isinstance(exc, pickle.PicklingError) and isinstance(exc, cf.SerializationError)
        assert ex.submit(abs, -2).result(timeout=TIMEOUT) == 2
    with pytest.raises(pickle.PicklingError):
        cf.map(abs, [1, PickleFails()], plan=cf.processes(2))


def test_the_call_whose_worker_is_killed_fails_with_broken_process_pool(tmp_path):
    marker = tmp_path / "pid"
    with cf.Executor(cf.processes(2)) as ex:
        running = ex.submit(pid_then_nap, str(marker))
        assert wait_for(marker)
        os.kill(int(marker.read_text()), signal.SIGKILL)
        exc = running.exception(timeout=TIMEOUT)
        assert isinstance(exc, cf.WorkerCrashed) and isinstance(exc, BrokenProcessPool)
        assert exc.signal == "SIGKILL"
        assert ex._broken is None  # the executor goes on: a new worker took its place
        assert [ex.submit(square, i).result(timeout=TIMEOUT) for i in range(4)] == [0, 1, 4, 9]


def test_an_idle_worker_killed_fails_nothing():
    with cf.Executor(cf.processes(2)) as ex:
        pids = {ex.submit(os.getpid).result(timeout=TIMEOUT) for _ in range(20)}
        os.kill(pids.pop(), signal.SIGKILL)
        assert [f.result(timeout=TIMEOUT) for f in [ex.submit(square, i) for i in range(20)]] == [
            i * i for i in range(20)
        ]


def record_pid(path: str, value: str) -> None:
    with open(path, "a") as f:
        f.write(f"{os.getpid()} {value}\n")


INITIALIZED = "no"


def initialize(path: str, value: str) -> None:
    global INITIALIZED
    INITIALIZED = value
    record_pid(path, value)


def initialized(_=None) -> tuple[str, int]:
    return INITIALIZED, os.getpid()


def test_the_initializer_runs_once_in_each_worker(tmp_path):
    log = tmp_path / "init"
    with cf.Executor(cf.processes(2), initializer=initialize, initargs=(str(log), "yes")) as ex:
        got = [f.result(timeout=TIMEOUT) for f in [ex.submit(initialized) for _ in range(40)]]
    assert {value for value, _ in got} == {"yes"}
    lines = log.read_text().splitlines()
    assert sorted(lines) == sorted({f"{pid} yes" for _, pid in got})  # once per worker


def fail_to_initialize() -> None:
    raise ValueError("no database here")


@pytest.mark.parametrize("plan", PLANS, ids=IDS)
def test_a_failing_initializer_breaks_the_executor(plan, caplog):
    with cf.Executor(plan, initializer=fail_to_initialize) as ex:
        exc = ex.submit(square, 2).exception(timeout=TIMEOUT)
        assert isinstance(exc, cf.BrokenPlan) and "no database here" in str(exc)
        with pytest.raises(futures.BrokenExecutor):
            ex.submit(square, 3)
    assert any("no database here" in r.getMessage() for r in caplog.records)


ABANDONED = """
import os, sys, time, gc
import cheerful as cf

def note(path, i):
    time.sleep(0.3)
    open(os.path.join(path, f"done-{i}"), "w").close()

if __name__ == "__main__":
    path = sys.argv[1]
    left = cf.Executor(cf.processes(2))
    for i in range(3):
        left.submit(note, path, i)          # never shut down: finishes at exit
    quitting = cf.Executor(cf.processes(2))
    for i in range(3, 6):
        quitting.submit(note, path, i)
    quitting.shutdown(wait=False)           # returns at once, the calls still run
    dropped = cf.Executor(cf.processes(1))
    dropped.submit(note, path, 6)
    del dropped                             # collected: finishes, then stops
    gc.collect()
"""


def test_submitted_calls_finish_after_shutdown_without_wait_drop_and_exit(tmp_path):
    script = tmp_path / "abandon.py"
    script.write_text(ABANDONED)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and not done.stderr, done.stderr
    assert sorted(p.name for p in tmp_path.glob("done-*")) == [f"done-{i}" for i in range(7)]


def test_a_dropped_executor_stops_its_workers():
    import gc

    ex = cf.Executor(cf.processes(2))
    pids = {ex.submit(os.getpid).result(timeout=TIMEOUT) for _ in range(10)}
    last = ex.submit(square, 5)
    del ex
    gc.collect()
    assert last.result(timeout=TIMEOUT) == 25
    deadline = time.monotonic() + TIMEOUT
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
