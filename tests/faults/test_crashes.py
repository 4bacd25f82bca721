"""A task that kills its worker fails alone with WorkerCrashed; the pool heals itself.

The out-of-memory test is a real kernel OOM kill: the task moves its own worker into a
fresh memory cgroup limited to 100 MB and then allocates about 1 GB. It needs a writable
memory cgroup (v1 or v2); without one it is skipped.
"""

from __future__ import annotations

import ctypes
import faulthandler
import os
import signal
import time
from pathlib import Path

import pytest

import cheerful as cf

LIMIT = 100 * 1024 * 1024


def segfault_native(_):
    faulthandler.disable()  # pytest's faulthandler, inherited by forked workers, is noise here
    ctypes.string_at(0)


def segfault_signal(_):
    faulthandler.disable()
    os.kill(os.getpid(), signal.SIGSEGV)


def exit_three(_):
    os._exit(3)


def kill_nine(_):
    os.kill(os.getpid(), signal.SIGKILL)


def crash_at(bad: int, how):
    def task(x):
        if x == bad:
            how(x)
        return x * x

    return task


CRASHES = [
    (segfault_native, "SIGSEGV", None),
    (segfault_signal, "SIGSEGV", None),
    (exit_three, None, 3),
    (kill_nine, "SIGKILL", None),
]
CRASH_IDS = ["string_at(0)", "kill-SIGSEGV", "os._exit(3)", "kill-SIGKILL"]


def check_crash(got: list, bad: int, signame: str | None, exitcode: int | None) -> None:
    """Slot ``bad`` holds a WorkerCrashed naming it; every other slot its right value."""
    failure = got[bad]
    assert isinstance(failure, cf.Failure), failure
    crash = failure.exception
    assert isinstance(crash, cf.WorkerCrashed)
    assert crash.index == failure.index == bad
    assert f"task {bad}" in str(crash)
    if signame is not None:
        assert crash.signal == signame and signame in str(crash)
    if exitcode is not None:
        assert crash.exitcode == exitcode and str(exitcode) in str(crash)
    assert [v for i, v in enumerate(got) if i != bad] == [
        x * x for x in range(len(got)) if x != bad
    ]


@pytest.mark.parametrize(("how", "signame", "exitcode"), CRASHES, ids=CRASH_IDS)
@pytest.mark.parametrize("chunk_size", [1, 8, None])
def test_a_crash_fails_only_its_task(two, how, signame, exitcode, chunk_size):
    got = cf.map(crash_at(5, how), range(16), plan=two, chunk_size=chunk_size, errors="return")
    check_crash(got, 5, signame, exitcode)
    assert cf.map(abs, range(-4, 4), plan=two) == [4, 3, 2, 1, 0, 1, 2, 3]


def test_a_crash_raises_worker_crashed(two):
    with pytest.raises(cf.WorkerCrashed) as info:
        cf.map(crash_at(3, exit_three), range(8), plan=two, chunk_size=4)
    assert (info.value.index, info.value.exitcode) == (3, 3)
    assert cf.map(abs, [-1, -2], plan=two) == [1, 2]


def test_several_crashes_in_one_map(two):
    def task(x):
        if x % 5 == 0:
            os._exit(x % 7 + 1)
        return x * x

    got = cf.map(task, range(20), plan=two, chunk_size=10, errors="return")
    for x, value in enumerate(got):
        if x % 5 == 0:
            assert isinstance(value.exception, cf.WorkerCrashed)
            assert (value.index, value.exception.exitcode) == (x, x % 7 + 1)
        else:
            assert value == x * x


def test_seeded_results_survive_a_crash(two):
    def draw(x):
        if x == 4:
            os._exit(1)
        return float(cf.task_rng().random())

    def safe_draw(x):
        return None if x == 4 else draw(x)

    reference = cf.map(safe_draw, range(10), plan=cf.sequential(), seed=5)
    for chunk_size in (10, 3, 1):
        got = cf.map(draw, range(10), plan=two, seed=5, chunk_size=chunk_size, errors="return")
        assert isinstance(got[4].exception, cf.WorkerCrashed)
        assert got[:4] + got[5:] == reference[:4] + reference[5:]


def test_imap_reports_the_crash_and_the_rest(two):
    pairs = dict(cf.imap(crash_at(2, segfault_signal), range(6), plan=two, errors="return"))
    assert sorted(pairs) == list(range(6))
    assert isinstance(pairs[2].exception, cf.WorkerCrashed)


# --- a real out-of-memory kill ----------------------------------------------------------


def _memory_cgroup_root() -> tuple[Path, str] | None:
    v1 = Path("/sys/fs/cgroup/memory")
    if (v1 / "memory.limit_in_bytes").exists() and os.access(v1, os.W_OK):
        return v1, "v1"
    v2 = Path("/sys/fs/cgroup")
    controllers = v2 / "cgroup.controllers"
    has_memory = controllers.exists() and "memory" in controllers.read_text().split()
    return (v2, "v2") if has_memory and os.access(v2, os.W_OK) else None


def _limit(group: Path, version: str) -> None:
    if version == "v1":
        (group / "memory.limit_in_bytes").write_text(str(LIMIT))
        swap = group / "memory.memsw.limit_in_bytes"
        if swap.exists():
            swap.write_text(str(LIMIT))
    else:
        (group / "memory.max").write_text(str(LIMIT))
        if (group / "memory.swap.max").exists():
            (group / "memory.swap.max").write_text("0")


@pytest.fixture
def memory_cgroup() -> Path:
    """A fresh memory cgroup capped at 100 MB; removed once its processes are gone."""
    found = _memory_cgroup_root()
    if found is None:
        pytest.skip("no writable memory cgroup (v1 or v2) to confine an OOM test")
    root, version = found
    group = root / f"cheerful-test-{os.getpid()}"
    try:
        group.mkdir()
        _limit(group, version)
    except OSError as exc:
        if group.exists():
            group.rmdir()
        pytest.skip(f"cannot set up a memory cgroup: {exc}")
    try:
        yield group
    finally:
        _remove_cgroup(group)


def _remove_cgroup(group: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            group.rmdir()
            return
        except OSError:  # its killed worker may not be reaped yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def hog_memory_in(procs: str):
    def task(x):
        if x == 3:
            try:
                Path(procs).write_text(str(os.getpid()))
            except OSError as exc:
                return f"cannot move a worker into the cgroup: {exc}"
            hoard = [b"x" * (10 * 1024 * 1024) for _ in range(100)]  # about 1 GB, touched
            return len(hoard)
        return x * x

    return task


def test_a_task_killed_for_memory_fails_alone(two, memory_cgroup):
    task = hog_memory_in(str(memory_cgroup / "cgroup.procs"))
    got = cf.map(task, range(8), plan=two, chunk_size=4, errors="return")
    if isinstance(got[3], str):
        pytest.skip(got[3])
    check_crash(got, 3, "SIGKILL", None)
    assert "memory" in str(got[3].exception)
    assert cf.map(abs, range(-3, 0), plan=two) == [3, 2, 1]
