"""The user-data of a cloud worker, executed for real on this machine.

``cf.fleet.up`` against moto renders the bootstrap and uploads cheerful's wheel; the test
then runs that exact script with bash in a scratch directory, as cloud-init would, with
the three variables that only make sense off EC2 set (no metadata service, no power-off,
a scratch root). The script makes a fresh virtualenv with uv, installs the uploaded wheel
(dependencies come from the package index), starts ``cheerful worker``, which completes
the job and leaves when the queue is idle, and uploads its bootstrap log to the store.
Credentials reach it only through the environment, as an instance role's would.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess

import pytest

import cheerful as cf
from cheerful.durable import layout
from cheerful.durable.backends import open_backend
from test_fleet import assert_no_secrets

pytestmark = pytest.mark.slow

SCRIPT = "import six\n\nresult = i * i\nprint('square of', i, 'with six', six.__version__)\n"
"""A task that needs a package of the user's requirements (six: small, pure Python)."""


@pytest.fixture
def s3_url(moto_server, new_s3_backend, monkeypatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
    return new_s3_backend("boot")


def test_the_user_data_installs_the_wheel_and_its_worker_completes_the_job(
    s3_url, tmp_path
) -> None:
    if shutil.which("bash") is None:
        pytest.skip("the bootstrap is a bash script and bash is missing")
    script = tmp_path / "square.py"
    script.write_text(SCRIPT)
    job = cf.submit_script(str(script), [{"i": i} for i in range(6)], backend=s3_url)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("six\n")
    launch = cf.fleet.up(
        s3_url, job=job.id, count=1, idle_exit=3, slots=2, requirements=str(requirements)
    )
    user_data = tmp_path / "user-data.sh"
    user_data.write_text(launch.user_data)

    root = tmp_path / "instance"
    env = {
        **os.environ,
        "CHEERFUL_ROOT": str(root),
        "CHEERFUL_METADATA_URL": "",
        "CHEERFUL_POWEROFF": "0",
        "UV_PYTHON_DOWNLOADS": "never",  # the client's Python is here: nothing to download
    }
    env.pop("CHEERFUL_BACKEND", None)
    done = subprocess.run(["bash", str(user_data)], env=env, timeout=600, cwd=tmp_path)
    log = (root / "bootstrap.log").read_text()
    assert done.returncode == 0, log[-4000:]

    assert job.results() == [i * i for i in range(6)], log[-4000:]
    assert "stopped (job settled)" in log
    assert (root / "venv" / "bin" / "cheerful").exists()
    assert "with six" in job.logs(0)  # the requirements were installed
    node = socket.gethostname()
    with open_backend(s3_url) as backend:
        stored = backend.store.get(layout.boot_log(node)).decode()
    assert "bootstrap ends (exit code 0)" in stored
    assert_no_secrets(log)


def run_user_data(user_data: str, tmp_path) -> tuple[int, str, object]:
    """Run a rendered bootstrap as cloud-init would (off EC2); return (code, log, root)."""
    script = tmp_path / "user-data.sh"
    script.write_text(user_data)
    root = tmp_path / "instance"
    env = {**os.environ, "CHEERFUL_ROOT": str(root), "CHEERFUL_METADATA_URL": "",
           "CHEERFUL_POWEROFF": "0", "UV_PYTHON_DOWNLOADS": "never"}  # fmt: skip
    env.pop("CHEERFUL_BACKEND", None)
    done = subprocess.run(["bash", str(script)], env=env, timeout=600, cwd=tmp_path)
    return done.returncode, (root / "bootstrap.log").read_text(), root


EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "loocv_r")


def _has_r() -> bool:
    probe = ["Rscript", "-e", "suppressPackageStartupMessages(library(randomForest))"]
    return shutil.which("Rscript") is not None and subprocess.run(probe).returncode == 0


@pytest.mark.skipif(not _has_r(), reason="needs R with randomForest (r-cran-randomforest)")
def test_the_r_example_runs_through_the_bootstrap_with_its_setup_step(
    s3_url, tmp_path, monkeypatch
) -> None:
    """The seed's job end to end on a "cloud" worker: the user-data runs its setup step,
    installs cheerful, and the worker runs an R command job whose script shipped with it,
    keeping each task's model; the results and the outputs come back through the store."""
    monkeypatch.chdir(EXAMPLE)
    envs = [{"i": i} for i in (1, 2, 3)]
    job = cf.submit_command("Rscript runme.R", envs, backend=s3_url, output="json")
    assert job.manifest["files"]["names"] == ["runme.R"]
    setup = ("Rscript -e 'suppressPackageStartupMessages(library(randomForest)); cat(\"R ok\\n\")'",)
    launch = cf.fleet.up(s3_url, job=job.id, count=1, idle_exit=3, slots=2, setup=setup)
    code, log, _ = run_user_data(launch.user_data, tmp_path)
    assert code == 0, log[-4000:]
    assert "setup: Rscript -e" in log and "R ok" in log  # the setup ran, its output logged
    got = job.results()
    assert [v["car"] for v in got] == ["Mazda RX4", "Mazda RX4 Wag", "Datsun 710"], log[-4000:]
    assert all(len(job.files(k)["model.rds"]) > 1000 for k in range(3))
    assert_no_secrets(log)


def test_a_failing_setup_step_is_recorded_and_the_worker_never_starts(s3_url, tmp_path) -> None:
    job = cf.submit(abs, [-1], backend=s3_url)
    launch = cf.fleet.up(s3_url, job=job.id, count=1, setup=("true", "exit 7", "echo never"))
    code, log, _ = run_user_data(launch.user_data, tmp_path)
    assert code != 0
    assert "setup failed (exit code 7): exit 7" in log and "setup: echo never" not in log
    assert "starting: cheerful worker" not in log
    node = socket.gethostname()
    with open_backend(s3_url) as backend:
        record = json.loads(backend.store.get(layout.boot_record(node)))
        stored_log = backend.store.get(layout.boot_log(node)).decode()
    assert record["state"] == "setup failed" and record["command"] == "exit 7"
    assert record["exit_code"] == 7 and "setup failed" in stored_log
    assert job.status().queued == 1  # nothing ran, nothing was lost
