"""The durable worker under faults: kill -9 of workers and of their slot processes, tasks
that raise, segfault, exit or hang, malformed messages. Nothing is lost, nothing is
recorded twice, and each failure stays with its own task, with its log.

Workers are real ``cheerful worker`` processes on an embedded backend under tmp_path; visibility is short (2 s) so that
lost chunks come back fast.
"""

from __future__ import annotations

import ctypes
import faulthandler
import json
import os
import random
import signal
import time
from pathlib import Path

import pytest

import cheerful as cf
from cheerful.durable.backends import open_backend
from cheerful.durable.fleet import LocalFleet
from cheerful.durable.messages import ChunkMessage
from cheerful.errors import TaskTimeout, WorkerCrashed
from durable_helpers import all_records, wait_for, worker_fleet

VISIBILITY = 2.0


def fleet(backend, count: int, log_dir: Path, **options) -> LocalFleet:
    """Workers that can import this module's tasks (they are pickled by reference)."""
    options = {"visibility": VISIBILITY, "grace": 2.0, "idle_exit": 30.0, **options}
    return worker_fleet(backend, count, os.path.dirname(__file__), log_dir=log_dir, **options)


@pytest.fixture
def backend(tmp_path):
    with open_backend(f"local://{tmp_path}/backend") as backend:
        yield backend


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


# --- tasks ------------------------------------------------------------------------------


def slow_square(x):
    time.sleep(0.04)
    return x * x


def misbehave(x):
    print(f"starting {x}", flush=False)
    if x == 1:
        raise ValueError("task 1 raises")
    if x == 2:
        faulthandler.disable()
        ctypes.string_at(0)  # segmentation fault
    if x == 3:
        os._exit(3)
    if x == 4:
        time.sleep(60)  # over the timeout
    return x * 10


def touch_and_sleep(args):
    path, seconds = args
    with open(path, "a") as file:
        file.write(f"{os.getpid()} {time.time()}\n")
    time.sleep(seconds)
    return "slept"


# --- (1) kill -9, repeatedly -------------------------------------------------------------


def test_kill_9_of_workers_and_slots_loses_nothing_and_records_each_task_once(backend, tmp_path):
    tasks, size = 600, 12  # 50 chunks, ~24 s of task time on 3 workers x 2 slots
    job = cf.submit(slow_square, range(tasks), backend=backend, chunk_size=size, retries=5)
    rng = random.Random(20241122)
    kills = {"worker": 0, "slot": 0}
    with fleet(backend, 3, tmp_path / "workers", slots=2) as workers:
        while kills["worker"] + kills["slot"] < 12 and len(all_records(backend, job)) < 45:
            time.sleep(rng.uniform(0.3, 0.7))
            alive = [p.pid for p in workers.alive()]
            kind = "slot" if (kills["worker"] + kills["slot"]) % 2 else "worker"
            victims = alive if kind == "worker" else [c for p in alive for c in children(p)]
            if not victims:
                continue
            os.kill(rng.choice(victims), signal.SIGKILL)
            kills[kind] += 1
            if kind == "worker":
                workers.add()  # a new instance comes up in place of the lost one
        status = job.wait(progress=False, timeout=120)
    print(f"\nkilled {kills['worker']} workers and {kills['slot']} slot processes")
    assert kills["worker"] >= 3 and kills["slot"] >= 3
    records = all_records(backend, job)
    assert sorted(r.chunk for r in records) == list(range(tasks // size))
    indices = [i for r in records for i in r.result.indices]
    assert sorted(indices) == list(range(tasks))  # every task exactly once
    for record in records:
        assert record.result.values == [i * i for i in record.result.indices], record.result.errors
    assert status.done == tasks and status.failed == 0 and status.dead == 0
    assert backend.queue.integrity_check() == "ok"
    assert backend.queue.counts().dead == 0


# --- (2) tasks that fail in every way ----------------------------------------------------


def test_each_kind_of_failing_task_fails_alone_with_its_reason_and_log(backend, tmp_path):
    job = cf.submit(misbehave, range(8), backend=backend, chunk_size=8, retries=0, timeout=2)
    with fleet(backend, 1, tmp_path / "workers", slots=2, idle_exit=1.0) as workers:
        job.wait(progress=False, timeout=60)
        workers.wait(30)
    values = job.results(errors="return")
    assert [values[i] for i in (0, 5, 6, 7)] == [0, 50, 60, 70]
    failures = {f.index: f for f in job.failures()}
    assert sorted(failures) == [1, 2, 3, 4]
    assert failures[1].type_name == "ValueError" and "task 1 raises" in failures[1].message
    assert isinstance(values[2].exception, WorkerCrashed)
    assert values[2].exception.signal == "SIGSEGV" and "SIGSEGV" in failures[2].message
    assert isinstance(values[3].exception, WorkerCrashed)
    assert values[3].exception.exitcode == 3 and "exited with code 3" in failures[3].message
    assert isinstance(values[4].exception, TaskTimeout)
    assert "timeout of 2 s" in failures[4].message
    for index in (1, 2, 3, 4):
        assert failures[index].attempts == 1
        assert f"starting {index}" in job.logs(index), index
    assert "ValueError: task 1 raises" in job.logs(1)
    assert "crashed" in job.logs(2) and "timeout" in job.logs(4)
    assert job.logs(5) == "starting 5\n"


# --- (3) malformed messages --------------------------------------------------------------


def test_malformed_messages_are_dead_lettered_and_the_worker_goes_on(backend, tmp_path):
    unknown = ChunkMessage("job-nobody-1", 0, (0, 1), inputs=b"\x80\x05N.")
    backend.queue.send(
        [
            os.urandom(64),
            json.dumps({"v": 1, "job": 5, "chunks": "x"}).encode(),
            unknown.encode(),
        ]
    )
    job = cf.submit(slow_square, range(20), backend=backend, chunk_size=5)
    with fleet(backend, 1, tmp_path / "workers", slots=2, idle_exit=1.0) as workers:
        job.wait(progress=False, timeout=60)
        assert workers.wait(30) == [0]
    assert job.results() == [x * x for x in range(20)]
    reasons = sorted(letter.reason for letter in backend.queue.dead_letters())
    assert len(reasons) == 3
    assert reasons[0].startswith("job 'job-nobody-1' not found")
    assert reasons[1].startswith("malformed message: ")
    assert reasons[2].startswith("malformed message: ")


# --- (4) recovery time after kill -9 -----------------------------------------------------


def test_a_killed_workers_chunk_runs_again_elsewhere_soon(backend, tmp_path):
    marks = tmp_path / "marks"
    job = cf.submit(touch_and_sleep, [(str(marks), 1.0)], backend=backend)
    with fleet(backend, 1, tmp_path / "first", slots=1) as first:
        wait_for(marks.exists, timeout=30)
        first.processes[0].kill()
        killed = time.time()
        first.processes[0].wait()
        with fleet(backend, 1, tmp_path / "second", slots=1):
            wait_for(lambda: len(marks.read_text().splitlines()) >= 2, timeout=5 * VISIBILITY + 10)
            job.wait(progress=False, timeout=30)
    assert job.results() == ["slept"]
    (_, first_start), (_, again) = (line.split() for line in marks.read_text().splitlines()[:2])
    delay = float(again) - killed
    print(f"\nchunk ran again {delay:.2f} s after kill -9 (visibility {VISIBILITY:g} s)")
    assert delay < 5 * VISIBILITY
