"""``cheerful worker`` as PID 1 (``docker run IMAGE cheerful worker``, a Kubernetes pod):
a tiny init in front of it.

PID 1 inherits every orphaned process of the container (the background children of a
command-mode task's shell, the programs of a slot killed at its timeout) and must reap
them, or they stay as zombies. The worker cannot reap what is not its own without taking
the exit statuses its slots and tasks wait for, so as PID 1 it forks once: the child is
the worker; the parent only forwards signals to it and reaps every process that ends,
until the worker itself has ended, whose exit code it takes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable
from typing import NoReturn

__all__ = ["FORWARDED", "as_pid_1"]

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1)
"""The signals PID 1 passes on to the worker."""


def as_pid_1(work: Callable[[], int]) -> int:
    """Run ``work`` (returning an exit code) under a reaping init when this process is
    PID 1; else run it as it is. Returns the exit code."""
    if os.getpid() != 1 or not hasattr(os, "fork"):
        return work()
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        _run_child(work)
    for sig in FORWARDED:
        signal.signal(sig, lambda signum, frame: _forward(child, signum))
    return _reap_until(child)


def _run_child(work: Callable[[], int]) -> NoReturn:
    for sig in FORWARDED:
        signal.signal(sig, signal.SIG_DFL)
    code = 1
    try:
        code = work()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _forward(child: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(child, signum)


def _reap_until(child: int) -> int:
    """Reap every process that ends until ``child`` has; return its exit code."""
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:  # pragma: no cover - the child is always ours to wait
            return 1
        except InterruptedError:  # pragma: no cover - PEP 475 retries, but be safe
            continue
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            return code if code >= 0 else 128 - code
