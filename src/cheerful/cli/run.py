"""``cheerful run`` and ``submit``: start a job (and, for ``run``, the workers that serve it)."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
from typing import Any

import click

from cheerful.errors import CheerfulError

from .cloud import CLOUD_OPTIONS, check_cloud, cloud_options, fleet_chunk_size, run_on_fleet
from .console import command_line, err, out, plural, submit_options
from .signals import STOPPING, StopSignals
from .submitting import submit_from_cli
from .tables import format_of, write_results

__all__ = ["RUN_IDLE_EXIT_S", "run", "submit"]

RUN_IDLE_EXIT_S = 60.0
"""Workers of ``cheerful run`` leave by themselves this long after the queue is empty, should
the caller die without stopping them."""


@click.command()
@click.argument("script", required=False, type=click.Path(dir_okay=False))
@click.option("--command", "command", help="a program to run once per env (command mode)")
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
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False),
    help="write the results here (by its suffix: .csv, .parquet, else JSON lines)",
)
@click.option(
    "--outputs",
    type=click.Path(file_okay=False),
    help="download the files tasks left in their output dir to DIR/<task>/",
)
@cloud_options
def run(
    script: str | None,
    command: str | None,
    envs: str,
    backend: str,
    workers: int,
    slots: int | None,
    out_file: str | None,
    outputs: str | None,
    **options: Any,
) -> None:
    """Run SCRIPT (Python) or --command "CMD" (any program) once per env: submit, start
    workers (here, or --fleet N cloud workers), wait, write the results, summarize.

    In a script task the env's names are its globals and its top-level ``result`` is the
    task's result; a command gets the env as environment variables. The job is durable:
    if this command is stopped, resume it with ``cheerful worker --job ID``.
    """
    cloud = {k: options.pop(k) for k in CLOUD_OPTIONS}
    check_cloud(backend, cloud)
    started = time.monotonic()
    if cloud["fleet"]:
        given = options.get("chunk_size")
        options["chunk_size"] = fleet_chunk_size(envs, cloud["fleet"], slots, given)
    job = submit_from_cli(script, command, envs, backend, **options)
    if job is None:
        return
    err.print(f"job {job.id}: {plural(job.tasks, 'task')} from {script or command}", style="bold")
    if cloud["fleet"]:
        status = run_on_fleet(job, backend, slots=slots, **cloud)
    else:
        status = _run_here(job, backend, workers, slots)
    elapsed = time.monotonic() - started
    if out_file is not None:
        write_results(job, out_file, format_of(out_file))
    if outputs is not None:
        counts = job.download_files(outputs)
        err.print(f"wrote {sum(counts.values())} output file(s) of {len(counts)} task(s) to {outputs}")
    _print_summary(job, status, backend, elapsed)
    if status.failed or status.dead or status.cancelled:
        sys.exit(1)


def _run_here(job: Any, backend: str, workers: int, slots: int | None) -> Any:
    """Run the job on worker processes of this machine; return its settled status."""
    from cheerful.durable.fleet import LocalFleet

    if slots is None and workers > 1:
        slots = max(1, (os.cpu_count() or 1) // workers)
    log_dir = tempfile.mkdtemp(prefix="cheerful-run-")
    fleet = LocalFleet(
        job.backend, workers, job=job.id, slots=slots, idle_exit=RUN_IDLE_EXIT_S, log_dir=log_dir
    )
    resume = command_line("worker", backend, "--job", job.id)
    stopped_by = None
    with StopSignals(fleet) as signals:
        try:
            with signals.held():  # a signal waits until every worker started is known
                fleet.start()
            status = job.wait(progress=_WatchedBar(job, fleet, log_dir, resume))
        except _Settled as settled:
            status = settled.status
        except KeyboardInterrupt:
            stopped_by = signals.first or signal.SIGINT
            err.print("\n" + STOPPING[stopped_by])
        finally:
            signals.stopping()  # from now on a signal only hurries the workers
            fleet.stop(force=stopped_by == signal.SIGTERM or signals.count > 1)
    if stopped_by is not None:
        err.print(f"job {job.id} is kept; to go on with it:\n  {resume}")
        sys.exit(128 + stopped_by)
    shutil.rmtree(log_dir, ignore_errors=True)  # kept only when the workers died
    return status


class _Settled(Exception):  # noqa: N818 - not an error: how the bar ends the wait early
    """Every worker has exited and the store says the job is settled: stop waiting."""

    def __init__(self, status: Any) -> None:
        super().__init__("settled")
        self.status = status


class _WatchedBar:
    """The rich progress bar of ``job.wait``, which also stops waiting if every worker
    has died (instead of waiting for ever)."""

    def __init__(self, job, fleet, log_dir: str, resume: str) -> None:
        from cheerful.progress_rich import RichBar

        self.bar, self.job, self.fleet = RichBar(err.console), job, fleet
        self.log_dir, self.resume = log_dir, resume

    def __call__(self, **event: Any) -> None:
        self.bar(**event)
        unfinished = event.get("done", 0) < event.get("total", 0)
        if event.get("event") == "advance" and unfinished and not self.fleet.alive():
            # The counts shown may be estimates (a killed worker's report still looks
            # fresh): the store decides whether the job is finished.
            exact = self.job.status(exact=True)
            if exact.settled:
                raise _Settled(exact)
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
    job = submit_from_cli(script, command, envs, backend, **options)
    if job is None:
        return
    out.print(job.id)
    err.print(
        f"submitted {plural(job.tasks, 'task')}; start workers with:\n"
        f"  {command_line('worker', backend, '--job', job.id)}"
    )
    if job.backend.url.startswith("s3://"):
        err.print(
            f"or on EC2 spot instances:\n  {command_line('fleet up', backend, '--job', job.id, '--count', 'N')}"
        )
