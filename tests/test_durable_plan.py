"""``cf.plan(cf.durable_jobs(backend, workers=...))``: ``cf.map`` as one durable job.

Real workers (``cheerful worker`` processes) on the embedded backend and on s3:// (SQS on a
moto server, S3 on SeaweedFS): results in input order, seeds and errors as on every plan,
progress from the job, nested levels, Ctrl-C that leaves the job to reattach to, an early
stop that cancels it, and bad input refused before anything is submitted.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import cheerful as cf
from durable_helpers import wait_for

pytestmark = pytest.mark.slow


def square_and_draw(x):
    return x * x, random.random()


def fails_on_five(x):
    time.sleep(0.05)
    if x == 5:
        raise ValueError(f"no fives: {x}")
    return x


def add(a, b):
    return a + b


def inner_pids(n):
    """A nested map: the inner level's processes, and the cores this task was given."""
    pids = cf.map(_pid, range(4))
    return n, len(set(pids)), os.environ.get("CHEERFUL_CORES")


def _pid(_):
    time.sleep(0.2)
    return os.getpid()


@pytest.fixture
def s3_url(new_seaweed_backend):
    """A new backend: SQS on the moto server, S3 on SeaweedFS, made by ``cheerful init``."""
    return new_seaweed_backend("maps")


@pytest.fixture(params=["local", "s3"])
def url(request, tmp_path):
    if request.param == "local":
        return f"local://{tmp_path}/backend"
    return request.getfixturevalue("s3_url")


def jobs_of(url: str) -> list[cf.Job]:
    return cf.jobs(url)


def test_a_map_is_one_job_with_results_seeds_and_progress_as_on_every_plan(url, tmp_path):
    if url.startswith("local://"):
        cf.submit(abs, [1], backend=url).delete()  # set up, as `cheerful init` does
    events = []
    with cf.plan(cf.durable_jobs(url, workers=2)):
        got = cf.map(
            square_and_draw, range(40), seed=11, chunk_size=7, progress=lambda **e: events.append(e)
        )
        pairs = cf.starmap(add, [(i, 1) for i in range(5)])
        unordered = dict(cf.imap(abs, [-3, -2, -1]))
    with cf.plan(cf.sequential()):
        assert got == cf.map(square_and_draw, range(40), seed=11)  # same streams as anywhere
    assert pairs == [1, 2, 3, 4, 5] and unordered == {0: 3, 1: 2, 2: 1}
    assert [e.get("done") for e in events if e.get("event") == "advance"][-1] == 40
    made = jobs_of(url)
    assert len(made) == 3 and all(j.status().settled for j in made)  # one job per map
    assert sorted(j.tasks for j in made) == [3, 5, 40]


def test_errors_are_the_tasks_own_and_an_early_stop_cancels_the_job(tmp_path):
    url = f"local://{tmp_path}/backend"
    cf.submit(abs, [1], backend=url).delete()
    with cf.plan(cf.durable_jobs(url, workers=1, slots=1)):
        got = cf.map(fails_on_five, range(8), errors="return", chunk_size=1)
        with pytest.raises(ValueError, match="no fives: 5") as raised:
            cf.map(fails_on_five, range(200), chunk_size=1)
    assert isinstance(got[5], cf.Failure) and isinstance(got[5].exception, ValueError)
    assert [v for i, v in enumerate(got) if i != 5] == [0, 1, 2, 3, 4, 6, 7]
    assert "fails_on_five" in str(raised.value.__cause__)  # the remote traceback
    first, second = sorted(jobs_of(url), key=lambda j: j.tasks)
    assert first.status().settled and not first.status().cancelled
    status = second.status()
    assert status.cancelled  # nobody waits for the rest of it
    assert status.done + status.failed + status.dead + status.queued + status.dropped == 200


def test_workers_that_already_run_serve_the_map(tmp_path):
    url = f"local://{tmp_path}/backend"
    cf.submit(abs, [1], backend=url).delete()
    fleet = cf.fleet.LocalFleet(url, 1, idle_exit=30.0, log_dir=str(tmp_path))
    with fleet:
        with cf.plan(cf.durable_jobs(url)):
            assert cf.map(abs, range(-5, 0)) == [5, 4, 3, 2, 1]
        assert fleet.alive()  # not the plan's: they stay


def test_nested_levels_run_inside_each_task_with_the_workers_cores(tmp_path):
    url = f"local://{tmp_path}/backend"
    cf.submit(abs, [1], backend=url).delete()
    with cf.plan(cf.durable_jobs(url, workers=2), cf.processes(2)):
        got = cf.map(inner_pids, range(2))
    assert [n for n, _, _ in got] == [0, 1]
    assert all(pids == 2 for _, pids, _ in got)  # the inner map ran on two processes
    cores = max(1, (len(os.sched_getaffinity(0)) // 2))
    assert {given for _, _, given in got} == {str(cores)}  # each worker's share, one slot


CTRL_C = """
import sys, time
import cheerful as cf

def slow(x):
    time.sleep(0.3)
    return x

if __name__ == "__main__":
    with cf.plan(cf.durable_jobs({url!r}, workers=1, slots=1)):
        try:
            cf.map(slow, range(30), chunk_size=1)
        except cf.JobInterrupted as interrupted:
            print(interrupted, file=sys.stderr)
            print("JOB", interrupted.job_id)
            sys.exit(130)
"""


def test_ctrl_c_leaves_the_job_in_the_store_and_says_how_to_reattach(tmp_path):
    url = f"local://{tmp_path}/backend"
    cf.submit(abs, [1], backend=url).delete()
    script = tmp_path / "ctrl_c.py"
    script.write_text(textwrap.dedent(CTRL_C.format(url=url)))
    run = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: any(j.status().done for j in cf.jobs(url)), timeout=60)
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 130, err
    job_id = out.split("JOB ")[1].strip()
    assert f"cf.Job.attach('{job_id}'" in err and f"cheerful worker --job {job_id}" in err
    job = cf.Job.attach(job_id, url)
    status = job.status()
    assert not status.cancelled and not status.settled and not status.running
    assert not worker_processes(url)  # the plan's worker was stopped with it
    job.run_local(1).wait(60)
    assert job.results() == list(range(30))  # nothing lost, nothing twice


def worker_processes(url: str) -> list[str]:
    found = subprocess.run(["pgrep", "-af", f"cheerful worker --backend {url}"],
                           capture_output=True, text=True)  # fmt: skip
    return found.stdout.splitlines()


def test_bad_plans_are_refused_before_anything_is_submitted(tmp_path, s3_url):
    for bad, said in (
        (lambda: cf.durable_jobs("local", workers="many"), "workers=..."),
        (lambda: cf.durable_jobs("local", workers=0), "workers=..."),
        (lambda: cf.durable_jobs("local", workers=cf.cloud_workers(2)), "s3://"),
        (lambda: cf.cloud_workers(0), "count"),
        (lambda: cf.durable_jobs("local", retries=-1), "retries"),
        (lambda: cf.durable_jobs(""), "backend"),
    ):
        with pytest.raises(cf.ConfigError, match=said):
            bad()
    missing = s3_url.replace("/maps?", "/maps?queue=nosuchqueue&", 1)
    with cf.plan(cf.durable_jobs(missing)), pytest.raises(cf.ConfigError, match="cheerful init"):
        cf.map(abs, [1])
    nowhere = f"local://{tmp_path}/never-made"
    with cf.plan(cf.durable_jobs(nowhere)), pytest.raises(cf.ConfigError, match="cheerful init"):
        cf.map(abs, [1])
    assert not os.path.exists(tmp_path / "never-made")


def launched_user_data() -> str | None:
    """The user-data of the newest launch template cheerful made (None before any)."""
    import base64

    import boto3

    ec2 = boto3.client("ec2", region_name="us-east-1")
    templates = ec2.describe_launch_templates()["LaunchTemplates"]
    if not templates:
        return None
    newest = max(templates, key=lambda t: t["CreateTime"])
    versions = ec2.describe_launch_template_versions(LaunchTemplateId=newest["LaunchTemplateId"])
    data = versions["LaunchTemplateVersions"][0]["LaunchTemplateData"].get("UserData")
    return base64.b64decode(data).decode() if data else None


def instance_states(job: str) -> list[str]:
    import boto3

    ec2 = boto3.client("ec2", region_name="us-east-1")
    found = ec2.describe_instances(Filters=[{"Name": "tag:cheerful:job", "Values": [job]}])
    return [i["State"]["Name"] for r in found["Reservations"] for i in r["Instances"]]


def test_cloud_workers_are_launched_for_the_map_and_terminated_after_it(
    moto_server, new_s3_backend, monkeypatch, tmp_path
):
    """moto launches no machine: the test runs the instance's user-data with bash, as
    cloud-init would; its worker (installed from the uploaded wheel) serves the map."""
    import shutil
    import threading

    from test_fleet_boot import run_user_data

    if shutil.which("bash") is None:
        pytest.skip("the bootstrap is a bash script and bash is missing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
    url = new_s3_backend("fleet")
    before = launched_user_data()
    outcome: dict = {}

    def the_callers_loop():
        workers = cf.cloud_workers(1, setup="echo set up", slots=2)
        try:
            with cf.plan(cf.durable_jobs(url, workers=workers)):
                outcome["value"] = cf.map(square_and_draw, range(6), seed=3)
        except BaseException as exc:  # noqa: BLE001 - shown by the assertion below
            outcome["error"] = exc

    caller = threading.Thread(target=the_callers_loop)
    caller.start()
    try:
        wait_for(lambda: launched_user_data() not in (None, before), timeout=60)
        user_data = launched_user_data()
        code, log, _ = run_user_data(user_data, tmp_path)
        assert code == 0, log[-4000:]
    finally:
        caller.join(120)
    assert "error" not in outcome, outcome.get("error")
    with cf.plan(cf.sequential()):
        assert outcome["value"] == cf.map(square_and_draw, range(6), seed=3)
    (job,) = cf.jobs(url)
    assert "set up" in log and "stopped (job settled)" in log
    assert set(instance_states(job.id)) <= {"shutting-down", "terminated"}
    assert instance_states(job.id)


def test_an_executor_sends_each_batch_of_calls_as_a_job(tmp_path):
    url = f"local://{tmp_path}/backend"
    cf.submit(abs, [1], backend=url).delete()
    with cf.plan(cf.durable_jobs(url, workers=2)), cf.Executor(seed=5) as executor:
        futures = [executor.submit(square_and_draw, i) for i in range(20)]
        failing = executor.submit(fails_on_five, 5)
        got = [f.result(timeout=60) for f in futures]
        mapped = list(executor.map(square_and_draw, range(20, 30)))
        assert isinstance(failing.exception(timeout=60), ValueError)
    with cf.plan(cf.sequential()), cf.Executor(seed=5) as executor:
        expected = [executor.submit(square_and_draw, i).result() for i in range(20)]
        executor.submit(fails_on_five, 5)
        expected += list(executor.map(square_and_draw, range(20, 30)))
    assert got + mapped == expected  # the n-th call's stream, as on every plan
    made = cf.jobs(url)
    assert 1 < len(made) < 21 and sum(j.tasks for j in made) == 31  # batches, not one per call
    assert not worker_processes(url)


def test_an_executor_cannot_launch_cloud_workers(s3_url):
    plan = cf.durable_jobs(s3_url, workers=cf.cloud_workers(2))
    with cf.Executor(plan=plan) as executor, pytest.raises(cf.ConfigError, match="fleet up"):
        executor.submit(abs, 1).result(timeout=30)
