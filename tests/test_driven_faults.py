"""Faults of the caller around cf.map and cf.Executor: no process is left behind, and no
worker is ever forked while the caller runs another thread.

Each test runs a real caller process (a small script) and looks at the processes it
started through /proc; whatever a test started is killed in ``finally``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ssh_servers import descendants, kill_all, wait_until

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc and relies on PR_SET_PDEATHSIG"
)

CALLERS = {
    "map": "cf.map(nap, range(4), plan=cf.processes(2), chunk_size=1)",
    "executor": "ex = cf.Executor(cf.processes(2))\n"
    "futures = [ex.submit(nap, i) for i in range(4)]\n"
    "[f.result() for f in futures]",
    "imap": "list(cf.imap(nap, iter(range(4)), plan=cf.processes(2), chunk_size=1))",
    "threaded caller": "import threading\n"
    "threading.Thread(target=threading.Event().wait, daemon=True).start()\n"
    "cf.map(nap, range(4), plan=cf.processes(2), chunk_size=1)",
}


def caller_script(tmp_path: Path, body: str) -> Path:
    """A caller whose tasks say they started (a file each), then sleep a minute."""
    script = tmp_path / "caller.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, sys, time
            import cheerful as cf

            def nap(i):
                open(os.path.join({str(tmp_path)!r}, f"started-{{os.getpid()}}"), "w").close()
                time.sleep(60)
                return i

            if __name__ == "__main__":
            """
        )
        + textwrap.indent(body, "    ")
        + "\n"
    )
    return script


def started(tmp_path: Path) -> set[int]:
    return {int(p.name.split("-")[1]) for p in tmp_path.glob("started-*")}


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.parametrize("how", list(CALLERS))
def test_workers_end_within_seconds_when_their_caller_is_sigkilled(tmp_path, how):
    script = caller_script(tmp_path, CALLERS[how])
    caller = subprocess.Popen([sys.executable, str(script)])
    left: list[int] = []
    try:
        assert wait_until(lambda: len(started(tmp_path)) == 2, 60), "the tasks never started"
        left = descendants(caller.pid)  # the zygote and the workers, busy with 60 s tasks
        assert started(tmp_path) <= set(left)
        caller.send_signal(signal.SIGKILL)
        caller.wait()
        assert wait_until(lambda: not any(map(alive, left)), 10), [
            p for p in left if alive(p)
        ]
    finally:
        caller.kill()
        caller.wait()
        kill_all(left)


FORK_WATCH = """
import os, sys, threading, warnings
warnings.simplefilter("error", DeprecationWarning)  # 3.12+: fork with threads warns
caller = os.getpid()
forks = []

def threads():
    with open("/proc/self/stat", "rb") as stat:
        return int(stat.read().rsplit(b")", 1)[1].split()[17])

def before():
    if os.getpid() == caller:
        forks.append((threading.active_count(), threads()))

os.register_at_fork(before=before)
import cheerful as cf

def crash(x):
    if x == 3:
        os._exit(1)
    return x

def square(x):
    return x * x

if __name__ == "__main__":
    with cf.Executor(cf.processes(2)) as ex:  # replaces a crashed worker from its thread
        assert [f.exception() is None for f in [ex.submit(crash, i) for i in range(6)]] == [
            True, True, True, False, True, True]
    assert cf.map(crash, range(6), errors="return", plan=cf.processes(2))[4] == 4
    stop = threading.Event()
    threading.Thread(target=stop.wait).start()  # a caller's own thread
    assert cf.map(square, range(8), plan=cf.processes(3)) == [x * x for x in range(8)]
    with cf.Executor(cf.processes(2)) as ex:
        assert ex.submit(square, 3).result() == 9
    stop.set()
    print(forks)
    assert forks and all(counts == (1, 1) for counts in forks), forks
"""


def test_no_worker_is_forked_while_the_caller_runs_a_thread(tmp_path):
    script = tmp_path / "forks.py"
    script.write_text(FORK_WATCH)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "multi-threaded" not in done.stderr
