"""``cheerful worker`` as PID 1, as in a container (``docker run IMAGE cheerful worker``).

The worker runs in a PID namespace of its own (``unshare --pid --fork --mount-proc``), so
it is PID 1 there: its slots must not take their parent's pid of 1 for "my parent died".
``--kill-child`` makes the namespace die with ``unshare``, so a failed test leaves no
process behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cheerful as cf

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("unshare") is None,
    reason="needs Linux and unshare (util-linux) to run a process as PID 1",
)

UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]

TASKS = """\
import os

def square(x):
    return x * x, os.getpid()
"""


def _unshare_works() -> str | None:
    """None if this process may make a PID namespace, else why not."""
    probe = [*UNSHARE, "sh", "-c", "echo $$"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare failed: {exc}"
    if done.returncode != 0 or done.stdout.strip() != "1":
        return f"unshare --pid is not permitted here: {done.stderr.strip() or done.stdout}"
    return None


def test_worker_as_pid_1_runs_every_task(tmp_path):
    why = _unshare_works()
    if why is not None:
        pytest.skip(why)
    (tmp_path / "pid1_tasks.py").write_text(TASKS)
    sys.path.insert(0, str(tmp_path))
    try:
        import pid1_tasks
    finally:
        sys.path.remove(str(tmp_path))
    url = f"local://{tmp_path}/backend"
    job = cf.submit(pid1_tasks.square, range(6), backend=url, chunk_size=1, retries=0)
    worker = [sys.executable, "-m", "cheerful", "worker", "--backend", url, "--job", job.id]
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    proc = subprocess.Popen(
        [*UNSHARE, *worker, "--idle-exit", "2", "--slots", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:  # --kill-child: the namespace dies with unshare
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert "(pid 1)" in output, output  # the worker was PID 1 of its namespace
    results = job.results(errors="return", wait=False)
    assert not any(isinstance(r, cf.Failure) for r in results), (results, output)
    assert [value for value, _ in results] == [x * x for x in range(6)]
    assert all(pid != 1 for _, pid in results)  # ran in the worker's slots, not in PID 1


def _zombies_under(pid: int) -> list[str]:
    """The zombie children of host process ``pid`` (name and pid)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/comm") as file:
                name = file.read().strip()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == pid:
            found.append(f"{name} {entry}")
    return found


def test_a_pid_1_worker_reaps_the_orphans_of_its_tasks(tmp_path):
    """Tasks whose shell leaves a background child behind: as PID 1, the worker (under its
    tiny init) reaps them, so no zombie piles up in the container."""
    why = _unshare_works()
    if why is not None:
        pytest.skip(why)
    url = f"local://{tmp_path}/backend"
    envs = [{"i": i, "NAP": "0"} for i in range(6)] + [{"i": 6, "NAP": "6"}]
    job = cf.submit_command("sleep 0.5 & echo $i; sleep $NAP", envs, backend=url, chunk_size=1)
    worker = [sys.executable, "-m", "cheerful", "worker", "--backend", url, "--job", job.id]
    proc = subprocess.Popen(
        [*UNSHARE, *worker, "--slots", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        init = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the last (long) task runs
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            init = int(children[0]) if children else None
            done = cf.Job.attach(job.id, url).status().done
            if init is not None and done == 6:
                break
            time.sleep(0.2)
        assert init is not None
        time.sleep(1)  # the last background sleeps have ended
        assert _zombies_under(init) == []
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert job.results(wait=False)[0].stdout == "0\n"
