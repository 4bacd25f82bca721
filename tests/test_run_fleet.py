"""``cheerful run --fleet N``: from the loop to a fleet and back in one command, against a
real ``moto_server``. moto launches no machine, so a ``cheerful worker`` process on this
machine stands in for the instances' workers; the command under test is real: it submits,
launches, waits with the cost so far, writes the results and terminates what it launched,
also when it is interrupted.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import boto3
import pytest

import cheerful as cf

pytestmark = pytest.mark.slow


@pytest.fixture
def s3_url(moto_server, new_s3_backend, monkeypatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
    return new_s3_backend("runs")


@pytest.fixture
def envs(tmp_path):
    path = tmp_path / "envs.jsonl"
    path.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(6)))
    return path


def start_run(s3_url: str, envs, tmp_path, *extra: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "cheerful", "run", "--command", 'echo "{\\"i\\": $i}"',
            "--envs", str(envs), "--output", "json", "--backend", s3_url, *extra]  # fmt: skip
    return subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, cwd=tmp_path)


def job_of(run: subprocess.Popen, lines: list[str]) -> str:
    """Read the run's stderr until it names its job; return the id."""
    for line in run.stderr:
        lines.append(line)
        found = re.match(r"job (\S+): \d+ task", line)
        if found:
            return found[1]
    raise AssertionError("".join(lines))


def states(job: str) -> list[str]:
    ec2 = boto3.client("ec2", region_name="us-east-1")
    found = ec2.describe_instances(Filters=[{"Name": "tag:cheerful:job", "Values": [job]}])
    return [i["State"]["Name"] for r in found["Reservations"] for i in r["Instances"]]


def test_a_fleet_run_launches_waits_writes_and_terminates(s3_url, envs, tmp_path):
    out = tmp_path / "results.jsonl"
    run = start_run(s3_url, envs, tmp_path, "--fleet", "2", "--out", str(out))
    lines: list[str] = []
    stand_in = None
    try:
        job = job_of(run, lines)
        worker = [sys.executable, "-m", "cheerful", "worker", "--backend", s3_url, "--job", job]
        stand_in = subprocess.Popen(worker, stderr=subprocess.DEVNULL)  # the instances' worker
        rest = run.communicate(timeout=180)[1]
    finally:
        for process in (run, stand_in):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    said = "".join(lines) + rest
    assert run.returncode == 0, said
    assert "launched 2 of 2 instance(s)" in said and "terminated 2 instances" in said
    assert [json.loads(line)["value"] for line in out.read_text().splitlines()] == [
        {"i": i} for i in range(6)
    ]
    assert set(states(job)) <= {"shutting-down", "terminated"} and len(states(job)) == 2
    assert cf.Job.attach(job, s3_url).status().settled


def test_an_interrupted_fleet_run_terminates_its_instances_and_says_how_to_go_on(
    s3_url, envs, tmp_path
):
    run = start_run(s3_url, envs, tmp_path, "--fleet", "1")
    lines: list[str] = []
    try:
        job = job_of(run, lines)
        for line in run.stderr:  # until the instance is launched
            lines.append(line)
            if line.startswith("launched "):
                break
        run.send_signal(signal.SIGINT)
        rest = run.communicate(timeout=120)[1]
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    said = "".join(lines) + rest
    assert run.returncode == 130, said
    assert "terminated 1 instance" in said
    assert f"cheerful fleet up --job {job} --count 1" in said and "is kept" in said
    assert set(states(job)) <= {"shutting-down", "terminated"}
    status = cf.Job.attach(job, s3_url).status()
    assert status.queued == 6 and not status.settled  # nothing lost: it waits for workers


def test_fleet_options_need_a_cloud_backend_and_are_checked_first(envs, tmp_path):
    local = f"local://{tmp_path}/backend"
    argv = [sys.executable, "-m", "cheerful", "run", "--command", "true", "--envs", str(envs)]
    for extra, said in (
        (["--backend", local, "--fleet", "2"], "--fleet needs an s3:// backend"),
        (["--backend", local, "--max-dollars", "3"], "--max-dollars go with --fleet"),
    ):
        done = subprocess.run([*argv, *extra], capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 2 and said in done.stderr, done.stderr
    assert not os.path.exists(tmp_path / "backend")  # nothing was submitted
