"""The live view of a backend: its nodes (lost ones marked), its jobs' counts (estimated
from heartbeats while they run, exact otherwise, always adding up), ``cheerful status
--watch`` in a real terminal."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest

import cheerful as cf
from cheerful.durable import layout
from cheerful.durable.backends import open_backend
from cheerful.durable.overview import Overview
from durable_helpers import drain


@pytest.fixture
def backend(tmp_path):
    with open_backend(f"local://{tmp_path}/backend") as backend:
        yield backend


def beat(backend, worker: str, job: str, *, age: float, done: int, running: int) -> None:
    data = {
        "worker": worker,
        "state": "running" if running else "idle",
        "slots": 2,
        "busy": min(2, running),
        "running": [],
        "jobs": {job: {"chunks": 1, "done": done, "failed": 0, "running": running}},
        "updated": time.time() - age,
        "every": 5.0,
    }
    backend.store.put(layout.node(worker), json.dumps(data).encode())


def test_nodes_whose_heartbeat_stopped_are_lost(backend):
    job = cf.submit(abs, range(10), backend=backend)
    beat(backend, "alive-1", job.id, age=1.0, done=2, running=2)
    beat(backend, "gone-2", job.id, age=120.0, done=3, running=2)
    overview = Overview(backend)
    overview.refresh()
    states = {n.worker: n.state for n in overview.nodes}
    assert states == {"alive-1": "running", "gone-2": "lost"}
    assert [n.worker for n in overview.job_nodes(job.id)] == ["alive-1", "gone-2"]


def test_a_running_job_is_estimated_from_heartbeats_and_adds_up(backend):
    job = cf.submit(abs, range(10), backend=backend, chunk_size=2)
    overview = Overview(backend)
    overview.refresh()  # nothing runs: exact
    assert overview.views[job.id].exact and overview.views[job.id].status.queued == 10
    beat(backend, "w-1", job.id, age=0.5, done=40, running=9)  # more than the job has
    overview.refresh()
    view = overview.views[job.id]
    s = view.status
    assert not view.exact and s.running == 9 and s.done == 1
    assert s.done + s.failed + s.dead + s.running + s.queued + s.dropped == 10


def test_a_settled_job_is_read_once_until_a_retry(backend, tmp_path):
    job = cf.submit(abs, range(4), backend=backend)
    drain(backend)
    overview = Overview(backend)
    overview.refresh()
    assert overview.views[job.id].status.settled
    backend.store.delete_prefix(layout.results_prefix(job.id))  # would change an exact read
    overview.refresh()
    assert overview.views[job.id].status.done == 4  # kept: no listing of results again


def test_status_watch_shows_jobs_and_nodes_live_in_a_terminal(backend):
    job = cf.submit(abs, range(6), backend=backend, chunk_size=2)
    beat(backend, "node-7", job.id, age=1.0, done=2, running=2)
    pid, fd = pty.fork()
    if pid == 0:  # the child: cheerful in a real terminal
        os.environ.update(COLUMNS="160", LINES="50")
        argv = [sys.executable, "-m", "cheerful", "status", "--watch", "--every", "0.5"]
        os.execv(sys.executable, [*argv, "--backend", backend.url])
    seen = b""
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (b"node-7" not in seen or job.id.encode() not in seen):
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                seen += os.read(fd, 65536)
        os.kill(pid, signal.SIGINT)  # Ctrl-C leaves
        _, status = os.waitpid(pid, 0)
    finally:
        subprocess.run(["kill", "-9", str(pid)], capture_output=True)
        os.close(fd)
    text = seen.decode(errors="replace")
    assert job.id in text and "node-7" in text and "running" in text, text[-3000:]
    assert os.waitstatus_to_exitcode(status) == 0
