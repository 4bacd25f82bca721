"""Worker processes on this machine: ``cheerful run`` starts a few next to the caller.

Each worker is a ``python -m cheerful worker ...`` process in a session of its own, so a
Ctrl-C in the terminal reaches only the caller, which then stops the workers through
:meth:`LocalFleet.stop` (SIGTERM: running chunks get the grace period; then SIGKILL). A
forced stop (:meth:`LocalFleet.stop` with ``force``, or :meth:`LocalFleet.hurry` during a
stop) gives each worker a second signal, on which it releases its running chunks at once.
A worker left behind by a caller that died goes on with the job and leaves by itself after
its ``idle_exit``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from cheerful.errors import ConfigError

__all__ = ["LocalFleet", "worker_command"]

DEFAULT_GRACE_S = 30.0
"""The worker's own default grace period (``cheerful worker --grace``)."""
FORCED_STOP_S = 10.0
"""How long a forced stop waits for the workers to release their chunks before SIGKILL."""


def worker_command(
    backend: str,
    *,
    job: str | None = None,
    slots: int | None = None,
    idle_exit: float | None = None,
    visibility: float | None = None,
    grace: float | None = None,
) -> list[str]:
    """The argv of one ``cheerful worker`` process (options left out keep their defaults)."""
    argv = [sys.executable, "-m", "cheerful", "worker", "--backend", backend]
    options = {
        "--job": job,
        "--slots": slots,
        "--idle-exit": idle_exit,
        "--visibility": visibility,
        "--grace": grace,
    }
    for flag, value in options.items():
        if value is not None:
            argv += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return argv


class LocalFleet:
    """``count`` worker processes for ``backend`` (a URL, or a backend with ``.url``).

    Use it as a context manager (start on enter, :meth:`stop` on exit) or call
    :meth:`start` and :meth:`stop`. ``log_dir`` collects each worker's own stdout and
    stderr in ``worker-<n>.log`` (default: the caller's). ``command`` builds the argv from
    the same keywords as :func:`worker_command` (tests use it to start workers another way).
    """

    def __init__(
        self,
        backend: Any,
        count: int = 1,
        *,
        job: str | None = None,
        slots: int | None = None,
        idle_exit: float | None = None,
        visibility: float | None = None,
        grace: float | None = None,
        log_dir: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        command: Callable[..., Sequence[str]] = worker_command,
    ) -> None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(f"count must be a positive whole number, not {count!r}")
        self.url = backend if isinstance(backend, str) else getattr(backend, "url", None)
        if not isinstance(self.url, str):
            raise ConfigError(f"backend must be a URL or a backend with .url, not {backend!r}")
        self.count, self.grace, self.log_dir, self.env = count, grace, log_dir, env
        options = {"job": job, "slots": slots, "idle_exit": idle_exit, "visibility": visibility}
        self.argv = list(command(self.url, grace=grace, **options))
        self.processes: list[subprocess.Popen] = []
        self._outputs: list[IO[bytes]] = []

    def __enter__(self) -> LocalFleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalFleet:
        """Start the workers not started yet; return self."""
        while len(self.processes) < self.count:
            self.add()
        return self

    def add(self) -> subprocess.Popen:
        """Start one more worker (e.g. in place of one that died) and return it."""
        output = self._output(len(self.processes))
        process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            env=None if self.env is None else {**os.environ, **self.env},
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    @property
    def pids(self) -> list[int]:
        """The process ids of every worker started, alive or not."""
        return [p.pid for p in self.processes]

    def alive(self) -> list[subprocess.Popen]:
        """The workers still running."""
        return [p for p in self.processes if p.poll() is None]

    def wait(self, timeout: float | None = None) -> list[int | None]:
        """Wait for every worker to leave (e.g. by ``idle_exit``), at most ``timeout``
        seconds; return their exit codes (None for those still running)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for process in self.processes:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                process.wait(left)
            except subprocess.TimeoutExpired:
                break
        return [p.poll() for p in self.processes]

    def stop(self, timeout: float | None = None, *, force: bool = False) -> list[int | None]:
        """SIGTERM every worker; SIGKILL those still running after ``timeout`` seconds
        (default: their grace period plus 5 s). Return their exit codes.

        ``force``: do not let running chunks finish: each worker gets a second stop signal
        at once (it then releases its chunks to the queue and leaves) and ``timeout``
        defaults to :data:`FORCED_STOP_S`. A KeyboardInterrupt while waiting (a second
        Ctrl-C) forces the stop the same way before it goes on. No worker outlives this
        call, however it ends.
        """
        if timeout is None:
            grace = DEFAULT_GRACE_S if self.grace is None else self.grace
            timeout = FORCED_STOP_S if force else grace + 5.0
        try:
            for process in self.alive():
                _signal(process, signal.SIGTERM)
            if force:
                self.hurry()
            try:
                self.wait(timeout)
            except KeyboardInterrupt:
                self.hurry()
                self.wait(FORCED_STOP_S)
                raise
        finally:
            self.kill()
            for output in self._outputs:
                output.close()
            self._outputs.clear()
        return [p.poll() for p in self.processes]

    def hurry(self) -> None:
        """Give every worker still running a second stop signal: it releases its running
        chunks to the queue at once and leaves (call it after a first stop signal, as
        :meth:`stop` does). The second signal is SIGINT, not another SIGTERM: two equal
        signals sent close together may arrive as one."""
        for process in self.alive():
            _signal(process, signal.SIGINT)

    def kill(self, *, wait: bool = True) -> None:
        """SIGKILL every worker still running and wait for it (no chunk is released: the
        queue hands them out again when their visibility runs out). ``wait=False`` only
        sends the signal: safe in a signal handler, which may run while this thread waits
        for a worker (and holds the lock that ``Popen.wait`` takes)."""
        for process in self.alive():
            _signal(process, signal.SIGKILL)
            if wait:
                process.wait()

    def _output(self, number: int) -> IO[bytes] | None:
        if self.log_dir is None:
            return None
        Path(self.log_dir).mkdir(parents=True, exist_ok=True)
        output = open(Path(self.log_dir) / f"worker-{number}.log", "ab")  # noqa: SIM115
        self._outputs.append(output)
        return output


def _signal(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(sig)
