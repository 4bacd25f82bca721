"""``cheerful status``, ``results`` and ``logs``: read what a job's store holds."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click
from rich import box
from rich.table import Table

from cheerful.errors import CheerfulError

from .console import backend_option, command_line, err, out, plural
from .tables import FORMATS, format_of, write_results

if TYPE_CHECKING:
    from cheerful.durable.backends import Backend

__all__ = ["attach", "logs", "opened", "results", "status"]


@click.command()
@click.argument("job_id", metavar="[JOB]", required=False)
@backend_option
@click.option("--watch", is_flag=True, help="a live view, refreshed every few seconds")
@click.option(
    "--every",
    type=click.FloatRange(min=0.5),
    default=5.0,
    show_default=True,
    help="with --watch: seconds between two refreshes",
)
def status(job_id: str | None, backend: str, watch: bool, every: float) -> None:
    """List the jobs of the backend, or show one JOB's counts and failures (--watch: live)."""
    if watch:
        from .watch import watch as live

        with opened(backend) as there:
            if job_id is not None:
                attach(job_id, there)  # an unknown job is an error, not an empty view
            live(there, job_id, every)
        return
    with opened(backend) as there:
        if job_id is None:
            _print_jobs(there, backend)
        else:
            _print_job(attach(job_id, there), backend)


def opened(backend: str) -> Backend:
    """The existing backend at URL ``backend``, opened to read: nothing is created (a
    ConfigError names the path where there is no backend). Close it after use."""
    from cheerful.durable.backends import open_backend

    return open_backend(backend, create=False)


def attach(job_id: str, backend: str | Backend) -> Any:
    """The job ``job_id`` of ``backend``, an opened backend or a URL opened by
    :func:`opened` (JobNotFound, listing the known ids, if none)."""
    from cheerful.durable.job import Job

    return Job.attach(job_id, opened(backend) if isinstance(backend, str) else backend)


def _print_jobs(there: Backend, backend: str) -> None:
    from cheerful.durable.job import jobs

    found = jobs(there)
    if not found:
        err.print(f"no jobs in {backend}")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=0)  # fits 80 columns
    table.add_column("id", no_wrap=True)
    table.add_column("name", overflow="ellipsis", min_width=4)
    table.add_column("created", no_wrap=True)
    for name in ("tasks", "done", "failed", "dead"):
        table.add_column(name, no_wrap=True, justify="right")
    table.add_column("state", no_wrap=True)
    for job in found:
        s = job.status()
        table.add_row(
            job.id,
            job.name or job.manifest.get("label", ""),
            _when(job.created),
            str(s.total),
            str(s.done),
            str(s.failed),
            str(s.dead),
            s.state,
        )
    out.print(table)


def _print_job(job, backend: str) -> None:
    s = job.status()
    out.print(
        f"{job.id} ({job.manifest.get('kind')} {job.manifest.get('label', '')}), "
        f"created {_when(job.created)}: {s.state}",
        style="bold",
    )
    dropped = f", {s.dropped} dropped (cancelled)" if s.dropped else ""
    how = "final" if s.settled else "estimates while tasks run" if s.running else "so far"
    out.print(
        f"{plural(s.total, 'task')}: {s.done} done, {s.failed} failed, {s.dead} dead, "
        f"{s.running} running, {s.queued} queued{dropped} ({how}); "
        f"{plural(s.workers, 'worker')} reporting"
    )
    if s.incomplete:
        out.print(f"incomplete: {s.incomplete}", style="red")
    shipped = job.manifest.get("files")
    if shipped:
        from cheerful.durable.files import JobFiles

        out.print(f"files: {JobFiles.from_manifest(shipped).describe()}")
    if job.backend.url.startswith("s3://"):
        from cheerful.durable.fleet import job_troubles, spent

        try:
            dollars, running = spent(job.backend.url, job.id)
            troubles = job_troubles(job.backend.url, job.id)
        except CheerfulError as exc:  # no EC2 rights: the job's own status still stands
            err.print(f"(cloud workers unknown: {exc})")
        else:
            if dollars or running:
                from cheerful.durable.fleet.cost import money

                out.print(f"cloud workers: {running} running, about {money(dollars)} spent so far")
            for line in troubles:
                out.print(f"cloud workers: {line}", style="red")
    failures = job.failures()
    if not failures:
        return
    title = plural(len(failures), "failed task")
    table = Table("index", "type", "message", "attempts", title=title)
    for f in failures:
        first = f.message.strip().splitlines()[0] if f.message.strip() else ""
        table.add_row(str(f.index), f.type_name, first, str(f.attempts))
    out.print(table)
    out.print(
        f"a task's output: {command_line('logs', backend, job.id, 'INDEX')}\n"
        f"run them again: {command_line('retry', backend, job.id)}"
    )


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%m-%d %H:%M")


@click.command()
@click.argument("job_id", metavar="JOB")
@backend_option
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False),
    help="write to this file instead of stdout",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(FORMATS)),
    help="JSON lines (one per task: its result or error, status, attempts, seconds, "
    "worker, env), a table of one row per task (csv; parquet needs pandas and pyarrow), "
    "or a pickled list (needs --out) [default: by --out's suffix, else jsonl]",
)
@click.option(
    "--errors",
    type=click.Choice(["return", "raise"]),
    default="return",
    show_default=True,
    help="return: failed tasks get an error line; raise: fail if any task failed",
)
@click.option(
    "--files",
    "files_dir",
    type=click.Path(file_okay=False),
    help="also write the files each task left in its output dir to DIR/<task>/",
)
@click.option(
    "--partial",
    is_flag=True,
    help="write what is there of a job that is not finished (tasks with no result yet "
    "get an error line)",
)
def results(
    job_id: str,
    backend: str,
    out_file: str | None,
    fmt: str | None,
    errors: str,
    files_dir: str | None,
    partial: bool,
) -> None:
    """Write the results of JOB, in task order: JSON lines (one per task: index, ok, value
    or error, status, attempts, seconds, worker, env), a table (csv, parquet) or a pickle.

    A job that is not finished is an error (exit code 2) unless --partial."""
    with opened(backend) as there:
        job = attach(job_id, there)
        status = job.status(exact=True)
        if not status.settled and not partial:
            raise CheerfulError(_unfinished(job, status, backend))
        if not status.settled:
            err.print(f"job {job.id} is not finished: {status}; writing what is there")
        write_results(job, out_file, format_of(out_file, fmt), "return" if partial else errors)
        if files_dir is not None:
            counts = job.download_files(files_dir)
            err.print(f"wrote {sum(counts.values())} file(s) of {len(counts)} task(s) to {files_dir}")


def _unfinished(job: Any, status: Any, backend: str) -> str:
    """Why ``cheerful results`` writes nothing for a job that is not finished."""
    waiting = status.queued + status.running + status.dropped
    return (
        f"job {job.id} is not finished ({status.state}: {plural(waiting, 'task')} of "
        f"{status.total} have no result yet); follow it with "
        f"`{command_line('status', backend, job.id)}`, or write what is there with "
        f"`{command_line('results', backend, job.id, '--partial')}`"
    )


@click.command()
@click.argument("job_id", metavar="JOB")
@click.argument("index", type=click.IntRange(min=0))
@backend_option
@click.option(
    "--attempt",
    type=click.IntRange(min=1),
    help="which attempt (1 = the first) [default: the last]",
)
def logs(job_id: str, index: int, backend: str, attempt: int | None) -> None:
    """Print what task INDEX of JOB printed (stdout and stderr)."""
    with opened(backend) as there:
        job = attach(job_id, there)
        text = job.logs(index, attempt)
    if not text:
        err.print(
            f"task {index} of job {job.id} left no output"
            + (f" in attempt {attempt}" if attempt else "")
        )
        return
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
