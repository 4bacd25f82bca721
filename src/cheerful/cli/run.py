"""``cheerful run``, ``submit`` and ``worker``: start a job, and the workers that serve it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import click

from cheerful.errors import CheerfulError

from .console import backend_option, command_line, err, out, plural, submit_options

__all__ = ["RUN_IDLE_EXIT_S", "run", "submit", "worker"]

STORE_FAILING_EXIT = 3
"""The exit code of a worker that left because its store kept failing."""
RUN_IDLE_EXIT_S = 60.0
"""Workers of ``cheerful run`` leave by themselves this long after the queue is empty, should
the caller die without stopping them."""


@click.command()
@click.argument("script", type=click.Path(dir_okay=False))
@submit_options
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="worker processes to start on this machine",
)
@click.option(
    "--slots",
    type=click.IntRange(min=1),
    help="tasks each worker runs at once [default: CPUs / workers]",
)
def run(
    script: str, envs: str, backend: str, workers: int, slots: int | None, **options: Any
) -> None:
    """Run SCRIPT once per env on this machine: submit, start workers, wait, summarize.

    In each task the env's names are the script's globals and its top-level ``result`` is
    the task's result. The job is durable: if this command is stopped, resume it with
    ``cheerful worker --job ID``.
    """
    from cheerful.durable.fleet import LocalFleet
    from cheerful.durable.submit import submit_script

    started = time.monotonic()
    job = submit_script(script, envs, backend=backend, **options)
    err.print(f"job {job.id}: {plural(job.tasks, 'task')} from {script}", style="bold")
    if slots is None and workers > 1:
        slots = max(1, (os.cpu_count() or 1) // workers)
    log_dir = tempfile.mkdtemp(prefix="cheerful-run-")
    fleet = LocalFleet(
        job.backend, workers, job=job.id, slots=slots, idle_exit=RUN_IDLE_EXIT_S, log_dir=log_dir
    )
    resume = command_line("worker", backend, "--job", job.id)
    stopped_by = None
    with _StopSignals(fleet) as signals:
        try:
            with signals.held():  # a signal waits until every worker started is known
                fleet.start()
            status = job.wait(progress=_WatchedBar(fleet, log_dir, resume))
            elapsed = time.monotonic() - started
        except KeyboardInterrupt:
            stopped_by = signals.first or signal.SIGINT
            err.print("\n" + _STOPPING[stopped_by])
        finally:
            signals.stopping()  # from now on a signal only hurries the workers
            fleet.stop(force=stopped_by == signal.SIGTERM or signals.count > 1)
    if stopped_by is not None:
        err.print(f"job {job.id} is kept; to go on with it:\n  {resume}")
        sys.exit(128 + stopped_by)
    shutil.rmtree(log_dir, ignore_errors=True)  # kept only when the workers died
    _print_summary(job, status, backend, elapsed)
    if status.failed or status.dead or status.cancelled:
        sys.exit(1)


_STOPPING = {
    signal.SIGINT: "interrupted: stopping the workers (running tasks may finish first; "
    "Ctrl-C again to stop them now)",
    signal.SIGTERM: "terminated (SIGTERM): stopping the workers now (running tasks are put "
    "back in the queue)",
}


class _StopSignals:
    """Ctrl-C and SIGTERM while ``cheerful run`` waits for its job.

    The first signal raises KeyboardInterrupt in the main thread (SIGTERM as Ctrl-C does;
    :attr:`first` says which came), except inside :meth:`held`, which raises it at its
    end. After :meth:`stopping` a signal raises nothing: a SIGTERM, or a second signal,
    makes the workers release their running chunks at once
    (:meth:`~cheerful.durable.fleet.LocalFleet.hurry`); a third kills them. A signal the
    caller ignores (SIG_IGN, as in a background job) stays ignored.
    """

    def __init__(self, fleet: Any) -> None:
        self.fleet, self.saved = fleet, {}
        self.first: signal.Signals | None = None
        self.count, self.holding, self.raised, self.quiet = 0, False, False, False

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig, default in _DEFAULTS.items():
                if signal.getsignal(sig) is default:
                    self.saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold a signal back while the block runs; raise it when the block ends."""
        self.holding = True
        try:
            yield
        finally:
            self.holding = False
        if self.first is not None and not self.raised:
            self.raised = True
            raise KeyboardInterrupt

    def stopping(self) -> None:
        """The workers are being stopped: signals from now on only hurry them."""
        self.quiet = True

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.first is None:
            self.first = signal.Signals(signum)
        if self.quiet:
            if self.count > 2:
                self.fleet.kill(wait=False)  # stop() waits for them
            elif self.count == 2 or signum == signal.SIGTERM:
                self.fleet.hurry()
            return
        if self.holding or self.raised:  # raised already: the stop will see the count
            return
        self.raised = True
        raise KeyboardInterrupt


_DEFAULTS = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}


class _WatchedBar:
    """The rich progress bar of ``job.wait``, which also stops waiting if every worker
    has died (instead of waiting for ever)."""

    def __init__(self, fleet, log_dir: str, resume: str) -> None:
        from cheerful.progress_rich import RichBar

        self.bar, self.fleet, self.log_dir, self.resume = RichBar(err), fleet, log_dir, resume

    def __call__(self, **event: Any) -> None:
        self.bar(**event)
        unfinished = event.get("done", 0) < event.get("total", 0)
        if event.get("event") == "advance" and unfinished and not self.fleet.alive():
            codes = [p.returncode for p in self.fleet.processes]
            raise CheerfulError(
                f"every worker has exited (exit codes {codes}) before the job finished; "
                f"their output is in {self.log_dir}; the job is kept, go on with: {self.resume}"
            )


def _print_summary(job, status, backend: str, elapsed: float) -> None:
    if status.cancelled:
        err.print(f"job {job.id} was cancelled after {elapsed:.1f} s: {status}", style="red")
        return
    err.print(
        f"job {job.id}: {status.done} done, {status.failed} failed, "
        f"{status.dead} dead of {plural(status.total, 'task')} in {elapsed:.1f} s",
        style="red" if status.failed or status.dead else "green",
    )
    err.print(f"results are stored in {job.backend.url}; read them with:")
    err.print(f"  {command_line('results', backend, job.id)}")
    if status.failed or status.dead:
        err.print("see the failures and a task's output with:")
        err.print(f"  {command_line('status', backend, job.id)}")
        err.print(f"  {command_line('logs', backend, job.id, 'INDEX')}")
        err.print(f"run them again with: {command_line('retry', backend, job.id)}")


@click.command()
@click.argument("script", required=False, type=click.Path(dir_okay=False))
@click.option("--command", "command", help="a program to run once per env (command mode)")
@submit_options
def submit(
    script: str | None, command: str | None, envs: str, backend: str, **options: Any
) -> None:
    """Submit a durable job: SCRIPT once per env, or --command "CMD" once per env.

    Prints the job id. Nothing runs until a worker serves the backend.
    """
    from cheerful.durable.submit import submit_command, submit_script

    if (script is None) == (command is None):
        raise click.UsageError('give either SCRIPT or --command "CMD", not both or neither')
    if script is not None:
        job = submit_script(script, envs, backend=backend, **options)
    else:
        job = submit_command(command, envs, backend=backend, **options)
    out.print(job.id)
    err.print(
        f"submitted {plural(job.tasks, 'task')}; start workers with:\n"
        f"  {command_line('worker', backend, '--job', job.id)}"
    )
    if job.backend.url.startswith("s3://"):
        err.print(
            f"or on EC2 spot instances:\n  {command_line('fleet up', backend, '--job', job.id, '--count', 'N')}"
        )


@click.command()
@backend_option
@click.option("--job", help="serve only this job (others' chunks are left in the queue)")
@click.option("--slots", type=click.IntRange(min=1), help="tasks run at once [default: CPUs]")
@click.option(
    "--idle-exit",
    type=click.FloatRange(min=0),
    default=120.0,
    show_default=True,
    help="leave after the queue had nothing for this many seconds ('inf': never)",
)
@click.option(
    "--visibility",
    type=click.FloatRange(min=1),
    default=30.0,
    show_default=True,
    help="seconds a taken chunk stays hidden from other workers (kept alive while it runs)",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="on SIGTERM/SIGINT, seconds running chunks get to finish",
)
@click.option("--node", help="the name of this machine in heartbeats [default: host name]")
@click.option(
    "--metadata-url",
    envvar="CHEERFUL_METADATA_URL",
    help="EC2 instance metadata service to watch for spot interruption notices "
    "(http://169.254.169.254 on EC2) [env CHEERFUL_METADATA_URL]",
)
@click.option(
    "--store-timeout",
    type=click.FloatRange(min=1),
    default=300.0,
    show_default=True,
    help="leave (exit code 3) when the store has kept failing this many seconds ('inf': never)",
)
def worker(
    backend: str,
    job: str | None,
    slots: int | None,
    idle_exit: float,
    visibility: float,
    grace: float,
    node: str | None,
    metadata_url: str | None,
    store_timeout: float,
) -> None:
    """Run tasks from the backend's queue until stopped, idle for --idle-exit, or (with
    --job) that job is finished. Exit code 3: the store kept failing (a full disk, no
    rights); what it held goes back to the queue."""
    from cheerful.durable.worker import run_worker
    from cheerful.durable.worker.pid1 import as_pid_1
    from cheerful.durable.worker.storing import STORE_FAILING

    err.print(
        f"cheerful worker (pid {os.getpid()}) serving {backend}" + (f", job {job}" if job else "")
    )

    def serve() -> int:
        summary = run_worker(
            backend,
            job=job,
            slots=slots,
            idle_exit=None if idle_exit == float("inf") else idle_exit,
            visibility=visibility,
            grace=grace,
            node=node,
            metadata_url=metadata_url or None,
            store_timeout=None if store_timeout == float("inf") else store_timeout,
        )
        err.print(str(summary))
        return STORE_FAILING_EXIT if summary.reason == STORE_FAILING else 0

    code = as_pid_1(serve)  # as PID 1 (a container), under a tiny init that reaps orphans
    if code:
        sys.exit(code)
