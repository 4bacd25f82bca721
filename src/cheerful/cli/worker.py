"""``cheerful worker``: serve a backend's queue (one job's, with --job) until done."""

from __future__ import annotations

import os
import sys

import click

from .console import backend_option, err

__all__ = ["STORE_FAILING_EXIT", "worker"]

STORE_FAILING_EXIT = 3
"""The exit code of a worker that left because its store kept failing."""


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
    "--gpus",
    help="'all', 'auto' (all if any) or a number: one slot per GPU, each task seeing only "
    "its own device",
)
@click.option(
    "--stop-at",
    type=float,
    help="a unix time at which to stop taking work and leave (a fleet's budget)",
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
    gpus: str | None,
    stop_at: float | None,
    store_timeout: float,
) -> None:
    """Run tasks from the backend's queue until stopped, idle for --idle-exit, or (with
    --job) that job is finished. Exit code 3: the store kept failing (a full disk, no
    rights); what it held goes back to the queue."""
    from cheerful.durable.worker import run_worker
    from cheerful.durable.worker.pid1 import as_pid_1
    from cheerful.durable.worker.storing import STORE_FAILING

    click.echo(  # plain: rich loads only once there is a summary to print
        f"cheerful worker (pid {os.getpid()}) serving {backend}" + (f", job {job}" if job else ""),
        err=True,
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
            stop_at=stop_at,
            gpus=None if gpus is None else (gpus if gpus in ("all", "auto") else _count(gpus)),
        )
        err.print(str(summary))
        return STORE_FAILING_EXIT if summary.reason == STORE_FAILING else 0

    code = as_pid_1(serve)  # as PID 1 (a container), under a tiny init that reaps orphans
    if code:
        sys.exit(code)


def _count(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise click.BadParameter(f"--gpus takes 'all' or a number, not {text!r}") from None
