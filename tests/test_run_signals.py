"""SIGTERM to ``cheerful run`` stops its workers as Ctrl-C does (once seen: exit 143 and
the workers still running 90 s later), and the job can be resumed.

Real processes: ``python -m cheerful run`` with a script whose tasks sleep, its worker
processes found by their command line (which holds the backend's unique path).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cheerful as cf
from cheerful.durable.backends import open_backend

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="finds processes through /proc"
)

SCRIPT = """\
import os, pathlib, time
here = pathlib.Path(os.environ["MARKS"])
(here / f"started-{i}").write_text(str(os.getpid()))
if not (here / "go").exists():
    time.sleep(300)
result = i * 10
"""


def _processes_with(text: str) -> list[int]:
    """Pids of the processes whose command line contains ``text`` (zombies have none)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:  # gone meanwhile
                continue
    return found


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not true after {timeout} s: {what}")


@pytest.fixture
def started_run(tmp_path):
    """``cheerful run`` of two sleeping tasks, once both run; everything it started is
    killed at the end, whatever happened."""
    backend_dir = tmp_path / "backend"
    marks = tmp_path / "marks"
    marks.mkdir()
    script, envs = tmp_path / "sleepy.py", tmp_path / "envs.jsonl"
    script.write_text(SCRIPT)
    envs.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(2)))
    url = f"local://{backend_dir}"
    argv = [sys.executable, "-m", "cheerful", "run", str(script), "--envs", str(envs)]
    env = {**os.environ, "MARKS": str(marks), "TMPDIR": str(tmp_path)}  # its logs: here
    env.pop("CHEERFUL_BACKEND", None)
    proc = subprocess.Popen(
        [*argv, "--backend", url, "--slots", "2", "--retries", "0"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # no terminal signal of the test's reaches it
    )
    try:
        _wait_for(lambda: len(list(marks.glob("started-*"))) == 2, 60, "both tasks running")
        workers = _processes_with(str(backend_dir))
        assert workers, "no worker process found"
        yield proc, url, backend_dir, marks
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        for pid in _processes_with(str(backend_dir)):  # workers and their slots
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_sigterm_stops_the_workers_and_exits_143(started_run):
    proc, url, backend_dir, marks = started_run
    os.kill(proc.pid, signal.SIGTERM)
    try:
        _, stderr = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("cheerful run did not exit within 20 s of SIGTERM")
    assert proc.returncode == 143, stderr
    assert "terminated (SIGTERM)" in stderr
    assert "is kept; to go on with it:" in stderr and "cheerful worker" in stderr
    _wait_for(lambda: not _processes_with(str(backend_dir)), 5, "no worker process left")

    # The running chunks went back to the queue at once: a new worker finishes the job.
    (marks / "go").touch()
    with open_backend(url) as backend:
        (job,) = cf.jobs(backend)
        assert backend.queue.counts().visible == 2  # released, not held until they expire
    resume = [sys.executable, "-m", "cheerful", "worker", "--backend", url, "--job", job.id]
    env = {**os.environ, "MARKS": str(marks)}
    subprocess.run([*resume, "--idle-exit", "1"], env=env, timeout=60, check=True)
    assert cf.Job.attach(job.id, url).results(wait=False) == [0, 10]


def test_a_second_signal_after_ctrl_c_stops_the_workers_at_once(started_run):
    proc, _, backend_dir, _ = started_run
    os.kill(proc.pid, signal.SIGINT)  # Ctrl-C: the running tasks get their grace period
    time.sleep(1.5)
    assert proc.poll() is None, "cheerful run left before its workers' grace period"
    assert _processes_with(str(backend_dir)), "the workers did not get their grace period"
    os.kill(proc.pid, signal.SIGTERM)  # a second signal: stop them now
    try:
        _, stderr = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("cheerful run did not exit within 20 s of a second signal")
    assert proc.returncode == 130, stderr  # the first signal says how it ended
    assert "interrupted: stopping the workers" in stderr
    _wait_for(lambda: not _processes_with(str(backend_dir)), 5, "no worker process left")
