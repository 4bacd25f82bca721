"""Messages that are not what their job sent: each is checked against the job's chunk plan
before anything runs, dead-lettered with the reason, and can neither overwrite a stored
result, crash a worker, nor make the job's readers (status, results, retry) fail.
Real ``cheerful worker`` processes, on both backends.
"""

from __future__ import annotations

import base64
import json
import os

import pytest
from click.testing import CliRunner

import cheerful as cf
from cheerful.cli import main
from cheerful.durable.backends import open_backend
from cheerful.serialize import dumps
from durable_helpers import worker_fleet


def double(x):
    return 2 * x


@pytest.fixture(params=["local", "s3"])
def url(request, tmp_path):
    if request.param == "local":
        return f"local://{tmp_path}/backend"
    return request.getfixturevalue("new_s3_backend")("forged")


def forged(job: str) -> dict[str, dict]:
    """Bodies a worker must refuse, by what is wrong with them."""
    inputs = base64.b64encode(dumps([100, 101])).decode()
    base = {"v": 1, "job": job}
    return {
        "negative indices": {**base, "chunk": 0, "indices": [-3, -2], "inputs": inputs},
        "negative chunk": {**base, "chunk": -1, "start": 0, "count": 2, "inputs": inputs},
        "a huge count": {**base, "chunk": 0, "start": 0, "count": 10**8, "inputs": inputs},
        "a chunk the job never had": {**base, "chunk": 99, "indices": [2, 3], "inputs": inputs},
        "another chunk's tasks": {**base, "chunk": 2, "indices": [0, 1], "inputs": inputs},
        "tasks out of range": {**base, "chunk": 0, "indices": [1000, 1001], "inputs": inputs},
        "inputs that do not decode": {
            **base, "chunk": 1, "start": 2, "count": 2,
            "inputs": base64.b64encode(b"\x80\x05garbage").decode(),
        },  # fmt: skip
        "not base64": {**base, "chunk": 1, "start": 2, "count": 2, "inputs": "!!!"},
    }


def test_forged_messages_are_dead_lettered_and_change_no_result(url, tmp_path):
    job = cf.submit(double, range(8), backend=url, chunk_size=2, retries=0)
    bad = forged(job.id)
    with open_backend(url) as backend:
        backend.queue.send([json.dumps(b).encode() for b in bad.values()], group=job.id)
    here = os.path.dirname(__file__)
    options = {"visibility": 5.0, "idle_exit": 30.0, "log_dir": tmp_path / "w"}
    with worker_fleet(url, 1, here, slots=2, **options) as fleet:
        status = job.wait(progress=False, timeout=120)
        assert fleet.alive(), "a forged message stopped the worker"
    assert job.results() == [2 * x for x in range(8)]  # nothing was overwritten
    assert (status.done, status.failed, status.dead, status.settled) == (8, 0, 0, True)
    with open_backend(url) as backend:
        letters = backend.queue.dead_letters(100, group=job.id)
    assert len(letters) == len(bad)
    assert all(letter.reason.startswith("malformed message") for letter in letters)
    reasons = " | ".join(letter.reason for letter in letters)
    assert "not one of job" in reasons and "cannot be read" in reasons
    runner = CliRunner()
    for command in (["status", job.id], ["status"], ["results", job.id], ["retry", job.id]):
        result = runner.invoke(main, [*command, "--backend", url])
        assert result.exit_code == 0, (command, result.output)
    assert job.status().done == 8 and job.failures() == []
