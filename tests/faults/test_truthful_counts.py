"""Counts that tell the truth under faults, on both backends (embedded, and SQS + S3 on a
moto server): workers are killed with SIGKILL at random while some tasks fail, and once
the job is settled its status, ``cheerful status`` and ``cheerful run``'s summary and exit
code say exactly what ``job.results()`` and ``job.failures()`` hold.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

import cheerful as cf
from cheerful.cli import main
from cheerful.durable import layout
from cheerful.durable.backends import open_backend
from cheerful.durable.records import read_records
from durable_helpers import wait_for, worker_fleet

TASKS = 240
FAILING = {i for i in range(TASKS) if i % 11 == 0}


def maybe_fail(x):
    time.sleep(0.01)
    if x in FAILING:
        raise ValueError(f"task {x} fails, as it should")
    return x * 2


@pytest.fixture(params=["local", "s3"])
def url(request, tmp_path):
    if request.param == "local":
        return f"local://{tmp_path}/backend"
    return request.getfixturevalue("new_s3_backend")("chaos")


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def test_killed_workers_never_make_the_counts_lie(url, tmp_path):
    job = cf.submit(maybe_fail, range(TASKS), backend=url, chunk_size=4, retries=0)
    rng, kills = random.Random(20261201), 0
    options = {"visibility": 2.0, "grace": 1.0, "idle_exit": 60.0, "log_dir": tmp_path / "w"}
    here = os.path.dirname(__file__)
    with worker_fleet(url, 3, here, slots=2, **options) as fleet:
        while kills < 12 and not job.status().settled:
            time.sleep(rng.uniform(0.2, 0.8))
            alive = fleet.alive()
            if alive:
                rng.choice(alive).send_signal(signal.SIGKILL)  # no counter flushed
                kills += 1
                fleet.add()  # a new worker in its place
        status = job.wait(progress=False, timeout=240)
    assert kills >= 6
    truth = sorted(FAILING)
    assert (status.done, status.failed, status.dead) == (TASKS - len(truth), len(truth), 0)
    assert status.settled and status.state == "failed"
    assert [f.index for f in job.failures()] == truth
    got = job.results(errors="return")
    assert [i for i, v in enumerate(got) if isinstance(v, cf.Failure)] == truth
    assert all(got[i] == 2 * i for i in range(TASKS) if i not in FAILING)
    again = cf.Job.attach(job.id, url).status()
    assert (again.done, again.failed, again.dead, again.queued) == (status.done, len(truth), 0, 0)
    shown = cli("status", job.id, "--backend", url)
    assert shown.exit_code == 0, shown.output
    assert f"{TASKS - len(truth)} done, {len(truth)} failed, 0 dead" in shown.stdout
    assert f"{len(truth)} failed tasks" in shown.stdout
    listed = cli("status", "--backend", url)
    row = next(line for line in listed.stdout.splitlines() if job.id in line)
    assert re.search(rf"\b{TASKS}\s+{TASKS - len(truth)}\s+{len(truth)}\s+0\s+failed", row), row


RUNME = """
import time
time.sleep(0.05)
if i == 7:
    raise ValueError("task 7 fails")
result = i
"""


def test_cheerful_run_counts_a_failure_whose_worker_died_at_once(url, tmp_path):
    """The worker that stored the chunk with the one failing task is killed at once, before
    it can write its counters: the summary still says 1 failed, and the exit code is 1."""
    script, envs = tmp_path / "runme.py", tmp_path / "envs.jsonl"
    script.write_text(RUNME)
    envs.write_text("".join(f'{{"i": {i}}}\n' for i in range(40)))
    run = subprocess.Popen(
        [sys.executable, "-m", "cheerful", "run", str(script), "--envs", str(envs),
         "--backend", url, "--workers", "2", "--slots", "1", "--chunk-size", "4",
         "--retries", "0"],
        stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        first = run.stderr.readline()
        job_id = re.match(r"job (\S+):", first)[1]
        with open_backend(url) as backend:
            store = backend.store
            key = layout.result(job_id, 1)  # tasks 4-7
            wait_for(lambda: store.exists(key), timeout=120, every=0.005)
            (record,) = read_records(store, job_id, [1])
            os.kill(int(record.worker.rsplit("-", 1)[1]), signal.SIGKILL)
        rest = run.communicate(timeout=240)[1]
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 1, first + rest
    assert "39 done, 1 failed, 0 dead of 40 tasks" in rest, rest
    status = cli("status", job_id, "--backend", url)
    assert "40 tasks: 39 done, 1 failed, 0 dead" in status.stdout, status.stdout
    job = cf.Job.attach(job_id, url)
    assert [f.index for f in job.failures()] == [7]
