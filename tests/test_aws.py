"""The AWS backend (SQS + S3) end to end, against a real ``moto_server`` over HTTP.

Each test gets its own bucket and queue names, so tests never see each other's jobs. The
workers are real ``cheerful worker`` processes; one is killed with SIGKILL mid-run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

import cheerful as cf
from cheerful.cli import main
from cheerful.durable import layout
from cheerful.durable.backends import open_backend, parse_s3_url
from cheerful.durable.fleet import LocalFleet
from cheerful.errors import ConfigError, QueueError, StoreError
from durable_helpers import all_records, worker_fleet

VISIBILITY = 2.0


@pytest.fixture
def s3_url(new_s3_backend) -> str:
    """A fresh backend URL on the moto server, initialised (bucket and queues)."""
    return new_s3_backend("jobs-here")


def square(x):
    time.sleep(0.05)
    return x * x


def fleet(url: str, count: int, log_dir: Path, **options) -> LocalFleet:
    """Real ``cheerful worker`` processes that can import this module's tasks."""
    options = {"visibility": VISIBILITY, "grace": 2.0, "idle_exit": 30.0, **options}
    return worker_fleet(url, count, os.path.dirname(__file__), log_dir=log_dir, **options)


# --- the URL ----------------------------------------------------------------------------


def test_url_parts_and_canonical_form():
    where = parse_s3_url("s3://my-bucket/team/sims/?region=eu-west-1&endpoint_url=http://h:9000")
    assert (where.bucket, where.prefix, where.queue) == ("my-bucket", "team/sims", "team-sims")
    assert where.s3_endpoint == where.sqs_endpoint == "http://h:9000"
    assert where.url == (
        "s3://my-bucket/team/sims?endpoint_url=http%3A%2F%2Fh%3A9000&queue=team-sims&region=eu-west-1"
    )
    assert parse_s3_url(where.url) == where
    named = parse_s3_url("s3://b-1/p?queue=q_1&s3_endpoint=http://a&sqs_endpoint=https://b")
    assert (named.queue, named.s3_endpoint, named.sqs_endpoint) == ("q_1", "http://a", "https://b")
    assert parse_s3_url("s3://only-bucket").queue == "only-bucket"
    long = parse_s3_url("s3://bkt/" + "x" * 60)
    assert len(long.queue) <= 40


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("s3://B/p", "bucket name"),
        ("s3://ab/p", "bucket name"),
        ("s3://bkt/p?regoin=eu-west-1", "unknown option 'regoin'"),
        ("s3://bkt/p?region=", "needs a value"),
        ("s3://bkt/p?queue=a--b", "queue name"),
        ("s3://bkt/p?queue=has.dot", "queue name"),
        ("s3://bkt/p?endpoint_url=h:9000", "http"),
        ("s3://bkt/p?endpoint_url=http://a&s3_endpoint=http://b", "not both"),
        ("s3://bkt/a/../b", "segment"),
    ],
)
def test_bad_urls_say_what_to_fix(url, says):
    with pytest.raises(ConfigError, match=says.replace(".", r"\.")):
        open_backend(url)


# --- cheerful init ------------------------------------------------------------------------


def test_init_creates_once_and_then_changes_nothing(moto_server):
    url = f"s3://init-{uuid.uuid4().hex[:8]}/p?region=us-east-1&endpoint_url={moto_server.endpoint}"
    runner = CliRunner()
    refused = runner.invoke(main, ["init", "--backend", url])
    assert refused.exit_code == 2 and "--create-bucket" in refused.output
    first = runner.invoke(main, ["init", "--backend", url, "--create-bucket"])
    assert first.exit_code == 0, first.output
    assert "created bucket" in first.output
    assert "created SQS queue p" in first.output and "dead-letter queue p--dead" in first.output
    again = runner.invoke(main, ["init", "--backend", url, "--create-bucket"])
    assert again.exit_code == 0 and "nothing to do" in again.output
    assert "created" not in again.output


def test_a_backend_without_init_says_run_init(moto_server):
    unique = uuid.uuid4().hex[:8]
    url = f"s3://noinit-{unique}/p{unique}?region=us-east-1&endpoint_url={moto_server.endpoint}"
    with pytest.raises(QueueError, match="cheerful init"):
        cf.submit(square, range(3), backend=url)
    backend = open_backend(url)
    backend.queue.create()  # queues, but no bucket
    with pytest.raises(StoreError, match="cheerful init --backend URL --create-bucket"):
        cf.submit(square, range(3), backend=url)


def test_no_credentials_gives_an_actionable_error(moto_server, tmp_path):
    url = (
        f"s3://creds-{uuid.uuid4().hex[:8]}/p?region=us-east-1&endpoint_url={moto_server.endpoint}"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none")
    )
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    result = subprocess.run(
        [sys.executable, "-m", "cheerful", "init", "--backend", url, "--create-bucket"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "no AWS credentials found" in result.stderr and "aws configure" in result.stderr


# --- jobs end to end ------------------------------------------------------------------------


def test_function_job_two_workers_one_killed_results_complete_and_once(s3_url, tmp_path):
    tasks, size = 120, 6  # 20 chunks, ~6 s of task time on 2 workers x 1 slot
    with open_backend(s3_url) as backend:
        job = cf.submit(square, range(tasks), backend=backend, chunk_size=size, retries=3)
        with fleet(s3_url, 2, tmp_path / "workers", slots=1) as workers:
            deadline = time.monotonic() + 60
            while len(all_records(backend, job)) < 3 and time.monotonic() < deadline:
                time.sleep(0.2)
            victim = workers.alive()[0].pid
            os.kill(victim, signal.SIGKILL)  # mid-run: it holds a chunk
            status = job.wait(progress=False, timeout=120)
        records = all_records(backend, job)
        assert sorted(r.chunk for r in records) == list(range(tasks // size))
        indices = sorted(i for r in records for i in r.result.indices)
        assert indices == list(range(tasks))  # every task exactly once
        assert job.results() == [x * x for x in range(tasks)]
        assert status.done == tasks and status.failed == 0 and status.dead == 0
        assert backend.queue.counts(group=job.id).dead == 0


def test_script_job_through_the_cli(s3_url, tmp_path):
    script = tmp_path / "runme.py"
    script.write_text(
        "import math\nresult = {'i': i, 'root': math.isqrt(i * i)}\nprint('task', i)\n"
    )
    envs = tmp_path / "envs.jsonl"
    envs.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(30)))
    runner = CliRunner()
    submitted = runner.invoke(
        main, ["submit", str(script), "--envs", str(envs), "--backend", s3_url, "--chunk-size", "5"]
    )
    assert submitted.exit_code == 0, submitted.output
    job_id = submitted.output.split()[0]
    with fleet(s3_url, 2, tmp_path / "workers", slots=1):
        cf.Job.attach(job_id, s3_url).wait(progress=False, timeout=120)
    results = runner.invoke(main, ["results", job_id, "--backend", s3_url])
    assert results.exit_code == 0, results.output
    lines = [json.loads(line) for line in results.output.splitlines() if line.strip()]
    assert [line["value"]["root"] for line in lines] == list(range(30))
    logs = runner.invoke(main, ["logs", job_id, "7", "--backend", s3_url])
    assert "task 7" in logs.output
    listing = runner.invoke(main, ["status", "--backend", s3_url])
    assert job_id in listing.output


def test_big_inputs_spill_to_s3_and_a_deleted_job_leaves_nothing(s3_url, tmp_path):
    blob = b"x" * 300_000  # over the 256 KiB message limit: the chunk's inputs spill
    with open_backend(s3_url) as backend:
        job = cf.submit(len, [blob, blob[:10]], backend=backend, chunk_size=2)
        with fleet(s3_url, 1, tmp_path / "workers", slots=1):
            job.wait(progress=False, timeout=60)
        assert job.results() == [300_000, 10]
        assert job.delete() > 0
        assert list(backend.store.list(layout.job_prefix(job.id))) == []
        assert backend.queue.counts(group=job.id) == cf_counts(0, 0, 0)
        assert cf.jobs(backend) == []


def cf_counts(*values):
    from cheerful.durable.queues import QueueCounts

    return QueueCounts(*values)
