"""The ``cheerful`` command line: parses, calls the library, prints. No logic lives here.

Every command takes ``--backend`` (default ``local``, or the ``CHEERFUL_BACKEND``
environment variable). A cheerful error (a bad envs file, an unknown job, ...) prints one
``Error: ...`` line and exits with code 2, before anything is submitted.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shlex
import shutil
import sys
import tempfile
import time
from datetime import datetime
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.table import Table

from .errors import CheerfulError

BACKEND_HELP = (
    "backend URL: 'local' (./.cheerful), 'local:///abs/path' or "
    "'s3://bucket/prefix?region=R' (SQS + S3) [env CHEERFUL_BACKEND]"
)
RUN_IDLE_EXIT_S = 60.0
"""Workers of ``cheerful run`` leave by themselves this long after the queue is empty, should
the caller die without stopping them."""

REDIRECTED_WIDTH = 200
"""Columns of the output when it is not a terminal, so that tables are not squeezed."""

# No markup: task messages, labels and paths are printed as they are.
_width = None if sys.stdout.isatty() else REDIRECTED_WIDTH
out = Console(highlight=False, markup=False, soft_wrap=True, width=_width)
err = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)


class CheerfulCommandError(click.ClickException):
    """A cheerful error, shown as one ``Error: ...`` line; exit code 2."""

    exit_code = 2


class _Group(click.Group):
    """Turns every :class:`~cheerful.errors.CheerfulError` into a clean ``Error:`` line."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CheerfulError as exc:
            raise CheerfulCommandError(str(exc)) from None


def backend_option(fn):
    return click.option(
        "--backend",
        default="local",
        envvar="CHEERFUL_BACKEND",
        show_default=True,
        help=BACKEND_HELP,
    )(fn)


def submit_options(fn):
    """Options shared by ``run`` and ``submit``."""
    options = [
        click.option(
            "--envs",
            "envs",
            required=True,
            type=click.Path(dir_okay=False),
            help="one env per task: JSON lines or CSV with a header",
        ),
        click.option(
            "--retries",
            type=click.IntRange(min=0),
            default=2,
            show_default=True,
            help="runs again a task that raised, up to this many more times",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0, min_open=True),
            help="seconds after which a task is stopped (and counts as failed)",
        ),
        click.option("--name", help="a name for the job: its id starts with it"),
        click.option(
            "--seed", type=click.IntRange(min=0), help="per-task reproducible random streams"
        ),
        click.option(
            "--chunk-size", type=click.IntRange(min=1), help="tasks per chunk (default: automatic)"
        ),
        backend_option,
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.group(cls=_Group)
@click.version_option(package_name="cheerful")
def main() -> None:
    """cheerful: cheap and cheerful massively parallel batch processing."""


# --- init, run, submit, worker -----------------------------------------------------------


@main.command()
@backend_option
@click.option("--create-bucket", is_flag=True, help="create the S3 bucket too if it does not exist")
@click.option(
    "--instance-role",
    is_flag=True,
    help="also create the IAM role and instance profile of cloud workers (s3:// only)",
)
def init(backend, create_bucket, instance_role) -> None:
    """Create what the backend needs: for s3:// URLs, the SQS queue and its dead-letter
    queue (and the bucket, with --create-bucket; the workers' IAM role and instance
    profile, limited to this backend's queues and prefix, with --instance-role). Running
    it again changes nothing."""
    from .backends import init_backend, open_backend
    from .errors import ConfigError

    if instance_role and not backend.startswith("s3://"):
        raise ConfigError("--instance-role is for s3:// backends (cloud workers)")
    created = init_backend(backend, create_bucket=create_bucket)
    if instance_role:
        from .backends import parse_s3_url
        from .fleet import iam

        created += iam.ensure_instance_profile(parse_s3_url(backend))[1]
    for line in created:
        out.print(line)
    with open_backend(backend) as opened:
        url = opened.url
    if not created:
        out.print(f"nothing to do: {url} is ready")
    err.print(f"use it with --backend '{url}' (or export CHEERFUL_BACKEND='{url}')")


@main.command()
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
def run(script, envs, backend, workers, slots, **options) -> None:
    """Run SCRIPT once per env on this machine: submit, start workers, wait, summarize.

    In each task the env's names are the script's globals and its top-level ``result`` is
    the task's result. The job is durable: if this command is stopped, resume it with
    ``cheerful worker --job ID``.
    """
    from .fleet import LocalFleet
    from .submission import submit_script

    started = time.monotonic()
    job = submit_script(script, envs, backend=backend, **options)
    err.print(f"job {job.id}: {job.tasks} tasks from {script}", style="bold")
    if slots is None and workers > 1:
        slots = max(1, (os.cpu_count() or 1) // workers)
    log_dir = tempfile.mkdtemp(prefix="cheerful-run-")
    fleet = LocalFleet(
        job.backend, workers, job=job.id, slots=slots, idle_exit=RUN_IDLE_EXIT_S, log_dir=log_dir
    )
    resume = _command("worker", backend, "--job", job.id)
    with fleet:
        try:
            status = job.wait(progress=_WatchedBar(fleet, log_dir, resume))
        except KeyboardInterrupt:
            err.print("\ninterrupted: stopping the workers (running tasks may finish first)")
            err.print(f"job {job.id} is kept; to go on with it:\n  {resume}")
            sys.exit(130)
        elapsed = time.monotonic() - started
    shutil.rmtree(log_dir, ignore_errors=True)  # kept only when the workers died
    _print_summary(job, status, backend, elapsed)
    if status.failed or status.dead or status.cancelled:
        sys.exit(1)


class _WatchedBar:
    """The rich progress bar of ``job.wait``, which also stops waiting if every worker
    has died (instead of waiting for ever)."""

    def __init__(self, fleet, log_dir: str, resume: str) -> None:
        from .progress_rich import RichBar

        self.bar, self.fleet, self.log_dir, self.resume = RichBar(err), fleet, log_dir, resume

    def __call__(self, **event: Any) -> None:
        self.bar(**event)
        if event.get("event") == "advance" and not self.fleet.alive():
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
        f"{status.dead} dead of {status.total} tasks in {elapsed:.1f} s",
        style="red" if status.failed or status.dead else "green",
    )
    err.print(f"results are stored in {job.backend.url}; read them with:")
    err.print(f"  {_command('results', backend, job.id)}")
    if status.failed or status.dead:
        err.print("see the failures and a task's output with:")
        err.print(f"  {_command('status', backend, job.id)}")
        err.print(f"  {_command('logs', backend, job.id, 'INDEX')}")
        err.print(f"run them again with: {_command('retry', backend, job.id)}")


def _command(name: str, backend: str, *args: str) -> str:
    """A ``cheerful`` command line to suggest, with ``--backend`` unless it is the default."""
    words = ["cheerful", name, *args]
    if backend != "local":
        words += ["--backend", shlex.quote(backend)]
    return " ".join(words)


@main.command()
@click.argument("script", required=False, type=click.Path(dir_okay=False))
@click.option("--command", "command", help="a program to run once per env (command mode)")
@submit_options
def submit(script, command, envs, backend, **options) -> None:
    """Submit a durable job: SCRIPT once per env, or --command "CMD" once per env.

    Prints the job id. Nothing runs until a worker serves the backend.
    """
    from .submission import submit_command, submit_script

    if (script is None) == (command is None):
        raise click.UsageError('give either SCRIPT or --command "CMD", not both or neither')
    if script is not None:
        job = submit_script(script, envs, backend=backend, **options)
    else:
        job = submit_command(command, envs, backend=backend, **options)
    out.print(job.id)
    err.print(
        f"submitted {job.tasks} tasks; start workers with:\n"
        f"  {_command('worker', backend, '--job', job.id)}"
    )
    if job.backend.url.startswith("s3://"):
        err.print(
            f"or on EC2 spot instances:\n  {_command('fleet up', backend, '--job', job.id, '--count', 'N')}"
        )


@main.command()
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
def worker(backend, job, slots, idle_exit, visibility, grace, node, metadata_url) -> None:
    """Run tasks from the backend's queue until stopped (or idle for --idle-exit)."""
    from .worker import run_worker

    err.print(
        f"cheerful worker (pid {os.getpid()}) serving {backend}" + (f", job {job}" if job else "")
    )
    summary = run_worker(
        backend,
        job=job,
        slots=slots,
        idle_exit=None if idle_exit == float("inf") else idle_exit,
        visibility=visibility,
        grace=grace,
        node=node,
        metadata_url=metadata_url or None,
    )
    err.print(str(summary))


# --- observe ---------------------------------------------------------------------------


@main.command()
@click.argument("job_id", metavar="JOB", required=False)
@backend_option
def status(job_id, backend) -> None:
    """List the jobs of the backend, or show one JOB's counts and failures."""
    if job_id is None:
        _print_jobs(backend)
    else:
        _print_job(_attach(job_id, backend), backend)


def _attach(job_id: str, backend: str):
    from .job import Job

    return Job.attach(job_id, backend)


def _print_jobs(backend: str) -> None:
    from .job import jobs

    found = jobs(backend)
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
    out.print(
        f"{s.total} tasks: {s.done} done, {s.failed} failed, {s.dead} dead, "
        f"{s.running} running, {s.queued} queued; {s.workers} worker(s) reported"
    )
    if job.backend.url.startswith("s3://"):
        from .fleet import spent

        try:
            dollars, running = spent(job.backend.url, job.id)
        except CheerfulError as exc:  # no EC2 rights: the job's own status still stands
            err.print(f"(cloud workers unknown: {exc})")
        else:
            if dollars or running:
                from .fleet.cost import money

                out.print(f"cloud workers: {running} running, about {money(dollars)} spent so far")
    failures = job.failures()
    if not failures:
        return
    table = Table("index", "type", "message", "attempts", title=f"{len(failures)} failed tasks")
    for f in failures:
        first = f.message.strip().splitlines()[0] if f.message.strip() else ""
        table.add_row(str(f.index), f.type_name, first, str(f.attempts))
    out.print(table)
    out.print(
        f"a task's output: {_command('logs', backend, job.id, 'INDEX')}\n"
        f"run them again: {_command('retry', backend, job.id)}"
    )


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%m-%d %H:%M")


@main.command()
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
    type=click.Choice(["jsonl", "pickle"]),
    default="jsonl",
    show_default=True,
    help="JSON lines, or a pickled list (needs --out)",
)
@click.option(
    "--errors",
    type=click.Choice(["return", "raise"]),
    default="return",
    show_default=True,
    help="return: failed tasks get an error line; raise: fail if any task failed",
)
def results(job_id, backend, out_file, fmt, errors) -> None:
    """Write the results of JOB, in task order (JSON lines: index, ok, value or error)."""
    from .task import Failure

    if fmt == "pickle" and out_file is None:
        raise click.UsageError("--format pickle writes binary data: give --out FILE")
    values = _attach(job_id, backend).results(errors=errors, wait=False)
    failed = sum(isinstance(v, Failure) for v in values)
    if fmt == "pickle":
        with open(out_file, "wb") as file:
            pickle.dump(values, file, protocol=pickle.HIGHEST_PROTOCOL)
    else:
        lines = (_json_line(i, v, Failure) + "\n" for i, v in enumerate(values))
        if out_file is None:
            for line in lines:
                sys.stdout.write(line)
        else:
            with open(out_file, "w", encoding="utf-8") as file:
                file.writelines(lines)
    if out_file is not None:
        err.print(f"wrote {len(values)} results ({failed} failed) to {out_file}")


def _json_line(index: int, value: Any, failure_type: type) -> str:
    """One result as a JSON line; a value JSON cannot hold is written as its repr."""
    if isinstance(value, failure_type):
        exc = value.exception
        return json.dumps({"index": index, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
    try:
        return json.dumps({"index": index, "ok": True, "value": value}, default=_plain)
    except (TypeError, ValueError):
        return json.dumps({"index": index, "ok": True, "value": repr(value), "repr": True})


def _plain(value: Any) -> Any:
    """JSON for numpy values (``tolist``) and dataclasses; else TypeError."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


@main.command()
@click.argument("job_id", metavar="JOB")
@click.argument("index", type=click.IntRange(min=0))
@backend_option
@click.option(
    "--attempt",
    type=click.IntRange(min=1),
    help="which attempt (1 = the first) [default: the last]",
)
def logs(job_id, index, backend, attempt) -> None:
    """Print what task INDEX of JOB printed (stdout and stderr)."""
    job = _attach(job_id, backend)
    text = job.logs(index, attempt)
    if not text:
        err.print(
            f"task {index} of job {job.id} left no output"
            + (f" in attempt {attempt}" if attempt else "")
        )
        return
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


# --- act -------------------------------------------------------------------------------


@main.command()
@click.argument("job_id", metavar="JOB")
@backend_option
def retry(job_id, backend) -> None:
    """Send the failed and dead tasks of JOB again."""
    sent = _attach(job_id, backend).retry_failed()
    if not sent:
        err.print(f"job {job_id} has no failed or dead tasks")
        return
    err.print(
        f"sent {sent} task(s) of job {job_id} again; run them with:\n"
        f"  {_command('worker', backend, '--job', job_id)}"
    )


@main.command()
@click.argument("job_id", metavar="JOB")
@backend_option
def cancel(job_id, backend) -> None:
    """Cancel JOB: workers drop its remaining chunks; stored results stay."""
    if _attach(job_id, backend).cancel():
        err.print(f"job {job_id} is cancelled")
    else:
        err.print(f"job {job_id} was cancelled already")


from .cli_fleet import fleet  # noqa: E402 - its commands live in a module of their own

main.add_command(fleet)
