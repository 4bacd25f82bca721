"""EC2 spot notices reach a real ``cheerful worker`` process through a fake instance
metadata service (IMDSv2 over HTTP on 127.0.0.1, :mod:`fake_imds`).

An interruption: the worker stops receiving, stores a chunk that finishes within the
short grace, releases the one that does not at once (visible again long before its 60 s
visibility timeout), writes its heartbeat as "interrupted" and leaves; another worker
finishes the job, each task recorded exactly once. A rebalance recommendation: the worker
finishes what it runs, takes nothing new and leaves.

Tasks wait for gate files the test creates, so nothing depends on how fast this machine is.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

import cheerful as cf
from cheerful.durable import layout
from cheerful.durable.backends import open_backend
from cheerful.durable.fleet import LocalFleet
from cheerful.durable.worker.spot import INSTANCE_ACTION_PATH, METADATA_URL_ENV, REBALANCE_PATH
from durable_helpers import all_records, wait_for, worker_fleet
from fake_imds import FakeImds

REACTION_S = 5.0
"""An interrupted worker's running chunk is visible again within this long of the notice."""


def fleet(backend, log_dir: Path, **options) -> LocalFleet:
    """One worker that can import this module's tasks (they are pickled by reference)."""
    options = {"slots": 2, "visibility": 60.0, "grace": 2.0, "idle_exit": 60.0, **options}
    return worker_fleet(backend, 1, os.path.dirname(__file__), log_dir=log_dir, **options)


@pytest.fixture
def backend(tmp_path):
    with open_backend(f"local://{tmp_path}/backend") as backend:
        yield backend


@pytest.fixture
def imds():
    with FakeImds() as fake:
        yield fake


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def log_of(log_dir: Path) -> str:
    path = log_dir / "worker-0.log"
    return path.read_text(errors="replace") if path.exists() else ""


def started(marks: Path) -> list[int]:
    """The tasks that started, in order, once per start."""
    return [int(line.split()[0]) for line in lines(marks)]


def check_each_task_once(backend, job, tasks: int) -> None:
    indices = [i for r in all_records(backend, job) for i in r.result.indices]
    assert sorted(indices) == list(range(tasks))  # every task exactly once
    assert job.results() == [i * i for i in range(tasks)]
    assert backend.queue.counts().dead == 0 and not list(backend.queue.dead_letters())
    assert backend.queue.integrity_check() == "ok"


# --- tasks ------------------------------------------------------------------------------


def gated(args):
    """Note the start, wait until the gate file exists, return index squared."""
    marks, gate, index = args
    with open(marks, "a") as file:
        file.write(f"{index} {os.getpid()} {time.time()}\n")
    deadline = time.monotonic() + 120
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {gate} never opened")
        time.sleep(0.02)
    return index * index


# --- interruption -----------------------------------------------------------------------


def test_an_interruption_notice_stores_what_finishes_and_releases_the_rest_at_once(
    backend, imds, tmp_path, monkeypatch
):
    marks, finish, go = tmp_path / "marks", tmp_path / "finish", tmp_path / "go"
    items = [(str(marks), str(finish), 0), (str(marks), str(finish), 1)]  # chunk 0
    items += [(str(marks), str(go), 2), (str(marks), str(go), 3)]  # chunk 1
    job = cf.submit(gated, items, backend=backend, chunk_size=2)
    monkeypatch.setenv(METADATA_URL_ENV, imds.url)
    with fleet(backend, tmp_path / "a") as a:
        wait_for(lambda: sorted(started(marks)) == [0, 2])  # both chunks run on A
        assert backend.queue.counts().in_flight == 2
        imds.interrupt()
        wait_for(lambda: "spot interruption notice" in log_of(tmp_path / "a"))
        seen = imds.served[INSTANCE_ACTION_PATH]  # when A read the notice
        finish.touch()  # chunk 0 can finish within the grace; chunk 1 cannot
        wait_for(lambda: backend.queue.counts().visible >= 1)
        visible = time.time()
        assert a.wait(30) == [0]
        pid = a.processes[0].pid
    print(f"\nchunk visible again {visible - seen:.2f} s after the worker read the notice")
    assert visible - seen < REACTION_S
    log = log_of(tmp_path / "a")
    assert "stopped (spot interruption)" in log and "1 released" in log, log
    assert backend.queue.counts().visible == 1 and backend.queue.counts().in_flight == 0
    (record,) = all_records(backend, job)  # the chunk that finished in the grace is stored
    assert record.chunk == 0 and record.worker.endswith(f"-{pid}")
    (node,) = backend.store.list(layout.nodes_prefix())
    assert json.loads(backend.store.get(node))["state"] == "interrupted"

    monkeypatch.delenv(METADATA_URL_ENV)
    go.touch()
    polls = imds.count("GET")
    with fleet(backend, tmp_path / "b", idle_exit=1.0) as b:
        job.wait(progress=False, timeout=60)
        assert b.wait(30) == [0]
    assert imds.count("GET") == polls  # B has no metadata URL: it never asked
    check_each_task_once(backend, job, 4)
    assert sorted(started(marks)) == [0, 1, 2, 2, 3]  # task 2 ran on A (cut short) and B


# --- rebalance --------------------------------------------------------------------------


def test_a_rebalance_recommendation_finishes_running_work_and_takes_no_more(
    backend, imds, tmp_path, monkeypatch
):
    marks, finish = tmp_path / "marks", tmp_path / "finish"
    items = [(str(marks), str(finish), i) for i in range(3)]
    job = cf.submit(gated, items, backend=backend, chunk_size=1)
    monkeypatch.setenv(METADATA_URL_ENV, imds.url)
    with fleet(backend, tmp_path / "a", slots=1) as a:
        wait_for(lambda: len(started(marks)) == 1)
        imds.rebalance()
        wait_for(lambda: "rebalance recommendation" in log_of(tmp_path / "a"))
        assert imds.served[REBALANCE_PATH]
        assert a.alive()  # its chunk is still running: it does not leave before
        finish.touch()
        assert a.wait(30) == [0]
    log = log_of(tmp_path / "a")
    assert "stopped (rebalance)" in log and "1 chunk(s)" in log, log
    (record,) = all_records(backend, job)  # what A ran, nothing more
    assert tuple(record.result.indices) == (started(marks)[0],)
    counts = backend.queue.counts()
    assert (counts.visible, counts.in_flight) == (2, 0)

    monkeypatch.delenv(METADATA_URL_ENV)
    with fleet(backend, tmp_path / "b", idle_exit=1.0) as b:
        job.wait(progress=False, timeout=60)
        assert b.wait(30) == [0]
    check_each_task_once(backend, job, 3)
    assert sorted(started(marks)) == [0, 1, 2]  # each task started once
