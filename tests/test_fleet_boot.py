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
