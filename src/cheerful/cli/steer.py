"""``cheerful retry`` and ``cancel``: steer a job."""

from __future__ import annotations

import click

from cheerful.errors import JobError

from .console import backend_option, command_line, err, plural
from .observe import attach

__all__ = ["cancel", "retry"]


@click.command()
@click.argument("job_id", metavar="JOB")
@backend_option
@click.option(
    "--script",
    type=click.Path(dir_okay=False),
    help="run the failed tasks of a script job with this (fixed) script",
)
@click.option("--command", help="run the failed tasks of a command job with this command")
def retry(job_id: str, backend: str, script: str | None, command: str | None) -> None:
    """Send the failed and dead tasks of JOB again (safe to repeat: a task sent again and
    not finished yet is not sent twice). With --script or --command, the tasks sent run
    fixed code; their attempts are numbered on, and the earlier attempts' logs stay."""
    sent = attach(job_id, backend).retry_failed(script=script, command=command)
    if not sent:
        err.print(f"job {job_id} has no failed or dead tasks that are not being retried")
        return
    err.print(
        f"sent {plural(sent, 'task')} of job {job_id} again; run them with:\n"
        f"  {command_line('worker', backend, '--job', job_id)}"
    )


@click.command()
@click.argument("job_id", metavar="JOB")
@backend_option
def cancel(job_id: str, backend: str) -> None:
    """Cancel JOB: workers drop its remaining chunks; stored results stay."""
    try:
        cancelled = attach(job_id, backend).cancel()
    except JobError as exc:  # finished: its results stand as they are
        err.print(str(exc))
        return
    if cancelled:
        err.print(f"job {job_id} is cancelled")
    else:
        err.print(f"job {job_id} was cancelled already")
