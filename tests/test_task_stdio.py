"""A durable task may close or replace its standard output and error: that is no crash.

The slot process sends fds 1 and 2 to the chunk's log file while tasks run; a task that
closes them (a daemon-style library, ``os.close(1)``) returns its value like any other,
and the next task of the chunk still has its output captured.
"""

from __future__ import annotations

import os
import sys

import cheerful as cf
from cheerful.durable.backends import local_backend
from cheerful.durable.worker import run_worker


def close_stdio(i):
    print(f"before {i}", flush=True)
    if i == 1:
        os.close(1)
        os.close(2)
    if i == 2:
        sys.stdout.close()  # the Python stream too
    if i == 3:  # another file takes the freed descriptor 1
        os.close(1)
        opened = os.open(os.devnull, os.O_WRONLY)
        assert opened == 1
    return i * 10


def test_a_task_that_closes_its_stdout_and_stderr_returns_its_value(tmp_path):
    backend = local_backend(tmp_path / "backend")
    job = cf.submit(close_stdio, range(6), backend=backend, chunk_size=6, retries=0)
    run_worker(backend, slots=1, idle_exit=0.5)
    assert job.results(errors="return") == [0, 10, 20, 30, 40, 50]
    assert job.failures() == []
    assert job.logs(0) == "before 0\n"
    assert job.logs(4) == "before 4\n"  # later tasks of the chunk are still captured


LIVE_SCRIPT = r"""
import sys
import cheerful as cf

def talk(i):
    sys.stdout.write(f"live {i}\n")  # one write: whole lines even as workers race
    sys.stdout.flush()
    if i == 1:
        raise ValueError(i)
    return i

got = cf.map(talk, range(3), plan=cf.processes(2), chunk_size=1, errors="return")
print("output kept:", got[1].output)
"""


def test_cheerful_output_live_lets_tasks_print_as_they_go(tmp_path):
    import subprocess

    env = {**os.environ, "CHEERFUL_OUTPUT": "live"}
    done = subprocess.run(
        [sys.executable, "-c", LIVE_SCRIPT], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sorted(lines[:3]) == ["live 0", "live 1", "live 2"]
    assert lines[3] == "output kept: None"
