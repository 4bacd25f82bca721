"""``cheerful retry`` and ``cancel``: steer a job."""

from __future__ import annotations

import click

from .console import backend_option, command_line, err
from .observe import attach

__all__ = ["cancel", "retry"]


@click.command()
@click.argument("job_id", metavar="JOB")
@backend_option
def retry(job_id: str, backend: str) -> None:
    """Send the failed and dead tasks of JOB again."""
    sent = attach(job_id, backend).retry_failed()
    if not sent:
        err.print(f"job {job_id} has no failed or dead tasks")
        return
    err.print(
        f"sent {sent} task(s) of job {job_id} again; run them with:\n"
        f"  {command_line('worker', backend, '--job', job_id)}"
    )


@click.command()
@click.argument("job_id", metavar="JOB")
@backend_option
def cancel(job_id: str, backend: str) -> None:
    """Cancel JOB: workers drop its remaining chunks; stored results stay."""
    if attach(job_id, backend).cancel():
        err.print(f"job {job_id} is cancelled")
    else:
        err.print(f"job {job_id} was cancelled already")
