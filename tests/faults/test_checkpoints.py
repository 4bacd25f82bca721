"""Checkpoints: a long task told to leave saves its progress, and the next attempt, on
another worker, resumes from it (``cf.checkpoint``, ``cf.restore``, ``cf.interrupted``).

Real ``cheerful worker`` processes on the embedded backend; the first worker is told to
leave by SIGTERM, or by a spot interruption notice from a fake instance metadata service.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import cheerful as cf
from cheerful.durable import layout
from cheerful.durable.backends import open_backend
from cheerful.durable.worker.spot import METADATA_URL_ENV
from durable_helpers import all_records, wait_for, worker_fleet
from fake_imds import FakeImds

STEPS = 1000
"""Steps of a task, 10 ms each: longer than a spot poll (5 s), so the notice comes first."""


def stepper(args):
    """Count to :data:`STEPS` in 10 ms steps, resuming from a checkpoint; once told to leave,
    save the count and wait to be cut short. Returns (index, resumed from, final count)."""
    marks, index = args
    state = cf.restore(default={"step": 0})
    resumed = state["step"]
    with open(marks, "a") as file:
        file.write(f"start {index} {resumed}\n")
    while state["step"] < STEPS:
        if cf.interrupted():
            cf.checkpoint(state)
            print(f"saved at step {state['step']}", flush=True)
            with open(marks, "a") as file:
                file.write(f"saved {index} {state['step']}\n")
            time.sleep(120)  # the worker's grace runs out first
        time.sleep(0.01)
        state["step"] += 1
    return index, resumed, state["step"]


def outside_a_job(x):
    return cf.checkpoint({"x": x}), cf.restore(default="none"), cf.interrupted()


@pytest.fixture
def backend(tmp_path):
    with open_backend(f"local://{tmp_path}/backend") as backend:
        yield backend


def fleet(backend, log_dir: Path, **options):
    options = {"slots": 1, "visibility": 60.0, "grace": 1.0, "idle_exit": 60.0, **options}
    return worker_fleet(backend, 1, os.path.dirname(__file__), log_dir=log_dir, **options)


def marks_of(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def resume_elsewhere(backend, job, marks: Path, tmp_path: Path) -> None:
    """Worker B finishes the job; the task resumed from A's checkpoint, ran once."""
    with fleet(backend, tmp_path / "b", idle_exit=1.0) as b:
        job.wait(progress=False, timeout=60)
        assert b.wait(30) == [0]
    ((index, resumed, final),) = job.results()
    saved = [int(m[2]) for m in marks_of(marks) if m[0] == "saved"]
    assert index == 0 and final == STEPS
    assert 0 < resumed == saved[-1] < STEPS  # B started where A's checkpoint left off
    assert [m[0] for m in marks_of(marks)] == ["start", "saved", "start"]
    assert len(all_records(backend, job)) == 1 and backend.queue.counts().dead == 0
    assert backend.store.exists(layout.checkpoint(job.id, 0))
    (key,) = backend.store.list(layout.logs_prefix(job.id))  # A's output was kept
    log = backend.store.get(key).decode()
    assert f"saved at step {saved[-1]}" in log and "was cut short" in log, log


def test_a_stopped_worker_lets_its_task_checkpoint_and_another_resumes_it(backend, tmp_path):
    marks = tmp_path / "marks"
    job = cf.submit(stepper, [(str(marks), 0)], backend=backend)
    with fleet(backend, tmp_path / "a") as a:
        wait_for(lambda: len(marks_of(marks)) == 1)
        time.sleep(0.3)  # some steps done
        a.stop()  # SIGTERM: cf.interrupted() turns True, then the 1 s grace
        wait_for(lambda: any(m[0] == "saved" for m in marks_of(marks)))
        a.wait(30)
    assert backend.queue.counts().visible == 1  # released, not lost
    resume_elsewhere(backend, job, marks, tmp_path)


def test_a_spot_notice_lets_the_task_checkpoint_and_another_worker_resumes_it(
    backend, tmp_path, monkeypatch
):
    marks = tmp_path / "marks"
    job = cf.submit(stepper, [(str(marks), 0)], backend=backend)
    with FakeImds() as imds:
        monkeypatch.setenv(METADATA_URL_ENV, imds.url)
        with fleet(backend, tmp_path / "a", grace=2.0) as a:
            wait_for(lambda: len(marks_of(marks)) == 1)
            imds.interrupt()
            wait_for(lambda: any(m[0] == "saved" for m in marks_of(marks)))
            assert a.wait(30) == [0]
        monkeypatch.delenv(METADATA_URL_ENV)
    resume_elsewhere(backend, job, marks, tmp_path)


def test_outside_a_durable_job_checkpoints_are_a_no_op() -> None:
    assert cf.map(outside_a_job, [1, 2], plan=cf.sequential()) == [(False, "none", False)] * 2
    assert cf.map(outside_a_job, [1], plan=cf.processes(1)) == [(False, "none", False)]


def test_checkpoint_outside_any_task_is_harmless() -> None:
    assert cf.checkpoint(1) is False and cf.restore(5) == 5 and cf.interrupted() is False
