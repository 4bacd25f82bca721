"""Faults around submit: the submitter killed, bad code or bad envs caught before anything goes.

A job must outlive the process that submitted it (kill -9 right after submit, then attach
from a new process), and bad input must fail at submit time with nothing stored or sent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import cheerful as cf
from cheerful.durable import layout
from cheerful.durable.backends import open_backend

TESTS = Path(__file__).resolve().parents[1]

SUBMITTER = textwrap.dedent(
    """
    import sys, time
    import cheerful as cf

    def cube(x):  # defined in __main__: it travels by value
        return x ** 3

    job = cf.submit(cube, range(20), backend=sys.argv[1], chunk_size=3, seed=1)
    print(job.id, flush=True)
    time.sleep(600)
    """
)

ATTACHER = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[3])
    import cheerful as cf
    from durable_helpers import drain

    job = cf.Job.attach(sys.argv[2], backend=sys.argv[1])
    before = job.status()
    ran = drain(job.backend, worker="other-process")
    print(json.dumps({"queued": before.queued, "total": before.total, "ran": ran,
                      "results": job.results(), "done": job.status().done}))
    """
)


def test_a_job_outlives_its_submitter_killed_right_after_submit(tmp_path):
    url = f"local://{tmp_path}/backend"
    submitter = subprocess.Popen(
        [sys.executable, "-c", SUBMITTER, url], stdout=subprocess.PIPE, text=True
    )
    try:
        job_id = _read_line(submitter, timeout=60)
    finally:
        submitter.send_signal(signal.SIGKILL)
        submitter.wait(timeout=30)
    assert submitter.returncode == -signal.SIGKILL
    done = subprocess.run(
        [sys.executable, "-c", ATTACHER, url, job_id, str(TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert (got["total"], got["queued"], got["ran"], got["done"]) == (20, 20, 7, 20)
    assert got["results"] == [x**3 for x in range(20)]
    assert cf.Job.attach(job_id, backend=url).results() == got["results"]


def _read_line(process: subprocess.Popen, timeout: float) -> str:
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert line and line[0].strip(), "the submitter printed no job id"
    return line[0].strip()


def _nothing_submitted(backend) -> None:
    assert list(backend.store.list()) == []
    counts = backend.queue.counts()
    assert (counts.visible, counts.in_flight, counts.dead) == (0, 0, 0)


@pytest.fixture
def backend(tmp_path):
    with open_backend(f"local://{tmp_path}/backend") as backend:
        yield backend


def test_an_unpicklable_function_fails_at_submit_and_nothing_is_submitted(backend):
    lock = threading.Lock()

    def uses_a_lock(x):
        with lock:
            return x

    with pytest.raises(cf.SerializationError, match="closure variable 'lock'"):
        cf.submit(uses_a_lock, range(5), backend=backend)
    _nothing_submitted(backend)


def test_an_unpicklable_input_names_its_task_and_nothing_is_submitted(backend):
    items = [1, 2, threading.Lock(), 4]
    with pytest.raises(cf.SerializationError, match="task 2"):
        cf.submit(str, items, backend=backend)
    _nothing_submitted(backend)


def test_a_bad_envs_file_names_the_line_and_nothing_is_submitted(backend, tmp_path):
    script = tmp_path / "runme.py"
    script.write_text("result = i\n")
    envs = tmp_path / "envs.jsonl"
    lines = [json.dumps({"i": i}) for i in range(6)]
    lines.insert(6, "[7]")
    envs.write_text("\n".join(lines) + "\n")
    with pytest.raises(cf.ConfigError, match="envs.jsonl line 7: not a JSON object: \\[7\\]"):
        cf.submit_script(script, envs, backend=backend)
    with pytest.raises(cf.ConfigError, match="envs.jsonl line 7"):
        cf.submit_command("echo $i", envs, backend=backend)
    _nothing_submitted(backend)


def test_bad_env_names_are_refused_before_anything_is_submitted(backend, tmp_path):
    script = tmp_path / "runme.py"
    script.write_text("result = 1\n")
    envs = tmp_path / "envs.csv"
    envs.write_text("i,my-name\n1,2\n")
    with pytest.raises(cf.ConfigError, match="envs.csv line 2: 'my-name' is not a valid Python"):
        cf.submit_script(script, envs, backend=backend)
    _nothing_submitted(backend)


def test_a_job_whose_manifest_vanished_is_reported(backend):
    job = cf.submit(abs, [-1], backend=backend)
    backend.store.delete(layout.manifest(job.id))
    with pytest.raises(cf.JobNotFound, match="gone"):
        job.status()
    with pytest.raises(cf.JobNotFound, match="known jobs: none"):
        cf.Job.attach(job.id, backend=backend)


def test_a_submit_whose_queue_fails_cancels_the_job(tmp_path):
    backend = open_backend(f"local://{tmp_path}/backend")
    queue_file = Path(backend.queue.path)
    backend.queue.close()
    queue_file.unlink()
    os.mkdir(queue_file)  # the queue's file is now a directory: every send fails
    with pytest.raises(cf.JobError, match="the job is cancelled") as info:
        cf.submit(abs, range(3), backend=backend)
    assert isinstance(info.value.__cause__, cf.QueueError)
    (job,) = cf.jobs(backend)
    assert job.backend.store.exists(f"{layout.job_prefix(job.id)}/cancelled")


class _FlakyRemoteQueue:
    """A local queue that acts as a remote one (batches sent in parallel) and fails its
    fourth send."""

    remote = True

    def __init__(self, queue) -> None:
        self.queue, self.calls, self.lock = queue, 0, threading.Lock()

    def send(self, bodies, group=None):
        with self.lock:
            self.calls += 1
            fail = self.calls == 4
        if fail:
            raise cf.QueueError("throttled")
        return self.queue.send(bodies, group=group)

    def __getattr__(self, name):
        return getattr(self.queue, name)


def test_a_parallel_send_that_fails_says_exactly_how_many_went_out(tmp_path):
    import dataclasses

    from cheerful.durable.sending import SEND_BATCH, send_chunks

    opened = open_backend(f"local://{tmp_path}/backend")
    flaky = _FlakyRemoteQueue(opened.queue)
    backend = dataclasses.replace(opened, queue=flaky)
    chunks = [(n, [n]) for n in range(20 * SEND_BATCH)]
    with pytest.raises(cf.JobError, match=r"after (\d+) chunk message\(s\)") as info:
        send_chunks(backend, "job-x", chunks, lambda indices: list(indices), "submitting")
    said = int(info.value.args[0].split("after ")[1].split(" ")[0])
    in_queue = len(flaky.queue.receive(10_000, 0, 60))
    assert said == in_queue and said % SEND_BATCH == 0 and said < 20 * SEND_BATCH
    assert backend.store.exists(layout.cancelled("job-x"))  # workers drop what went out
