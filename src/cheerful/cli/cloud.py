"""``cheerful run --fleet N``: the job's own cloud workers, from launch to termination.

The workers are launched for the job once it is submitted; the progress bar says what they
cost so far; when the job settles, fails, runs out of budget or is interrupted, every
instance launched for it is terminated, and what is left (and how to go on) is said.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import Any

import click

from cheerful.errors import CheerfulError

from .console import command_line, err, plural
from .signals import StopSignals

__all__ = [
    "CLOUD_OPTIONS",
    "SLOTS_GUESS",
    "check_cloud",
    "cloud_options",
    "fleet_chunk_size",
    "run_on_fleet",
]

CLOUD_OPTIONS = ("fleet", "types", "setup", "max_dollars", "max_price", "requirements")
"""The options of ``cheerful run`` that launch cloud workers."""
SLOTS_GUESS = 8
"""Slots taken per instance when choosing a fleet job's chunk size without ``--slots`` (the
instance types' vCPUs are only known once launched; 8 is a middling spot type)."""


def cloud_options(fn: Callable) -> Callable:
    """``cheerful run``'s options for a fleet of its own."""
    from cheerful.durable.fleet import DEFAULT_TYPES

    options = [
        click.option(
            "--fleet",
            type=click.IntRange(min=1),
            help="launch N cloud workers for the job (s3:// backend), terminated when it ends",
        ),
        click.option(
            "--type",
            "types",
            default=",".join(DEFAULT_TYPES),
            show_default=True,
            help="with --fleet: instance types, comma-separated",
        ),
        click.option(
            "--setup",
            multiple=True,
            help="with --fleet: a shell command each instance runs once before its worker "
            "starts (repeat for several), e.g. 'apt-get install -y r-base-core'",
        ),
        click.option(
            "--max-dollars",
            type=float,
            help="with --fleet: stop the workers once this much is spent (nothing is lost)",
        ),
        click.option("--max-price", type=float, help="with --fleet: the highest $/h per instance"),
        click.option(
            "--requirements",
            type=click.Path(exists=True, dir_okay=False),
            help="with --fleet: a requirements.txt the workers install",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


class _NoHurry:
    """Cloud workers are not hurried by a second signal: their instances are terminated."""

    def hurry(self) -> None:
        """Nothing to do."""

    def kill(self, wait: bool = True) -> None:
        """Nothing to do."""


def check_cloud(backend: str, options: dict[str, Any]) -> None:
    """Refuse cloud options that cannot work, before anything is submitted."""
    from cheerful.durable.fleet.budget import check_budget

    if not options.get("fleet"):
        given = [f"--{n.replace('_', '-')}" for n in ("setup", "max_dollars") if options.get(n)]
        if given:
            raise click.UsageError(f"{' and '.join(given)} go with --fleet N")
        return
    if not backend.startswith("s3://"):
        raise click.UsageError(
            "--fleet needs an s3:// backend (SQS + S3) that instances can reach; for this "
            "machine's cores drop --fleet"
        )
    check_budget(options.get("max_dollars"))


def fleet_chunk_size(
    envs: str, instances: int, slots: int | None, given: int | None = None
) -> int | None:
    """The chunk size for a job run on ``instances`` cloud workers: about eight chunks per
    slot they will have (``--slots``, else :data:`SLOTS_GUESS` each). A ``given`` size is
    kept, but one that leaves slots without a chunk is said (those instances bill idle).
    None when the envs cannot be read (the submit then says why)."""
    import math

    from cheerful.durable.envs import load_envs
    from cheerful.durable.submit import auto_chunk_size

    try:
        tasks = len(load_envs(envs))
    except (CheerfulError, OSError):
        return given
    total = instances * (slots or SLOTS_GUESS)
    if given is None:
        return auto_chunk_size(tasks, remote=True, slots=total)
    chunks = math.ceil(tasks / given)
    if chunks < total:
        err.print(
            f"--chunk-size {given} makes {plural(chunks, 'chunk')} for about {total} slots of "
            f"{plural(instances, 'instance')}: some will stand idle (and bill) for the whole "
            "job; leave --chunk-size out to cut the job for the fleet",
            style="yellow",
        )
    return given


def run_on_fleet(job: Any, backend: str, *, slots: int | None, fleet: int, **options: Any) -> Any:
    """Launch ``fleet`` cloud workers for ``job``, wait for it, terminate them; return the
    job's status (exit the process, saying how to go on, if it was interrupted)."""
    from cheerful.durable.fleet import JobFleet
    from cheerful.progress_rich import RichBar

    types = tuple(t.strip() for t in options.pop("types").split(","))
    workers = JobFleet(job.backend.url, job.id, count=fleet, types=types, slots=slots, **options)
    resume = command_line("fleet up", backend, "--job", job.id, "--count", str(fleet))
    stopped_by, status = None, None
    with StopSignals(_NoHurry()) as signals:
        try:
            with signals.held():
                launch = workers.start()
            err.print(f"launched {launch.granted} of {fleet} instance(s): {launch.estimate}")
            if launch.granted == 0:
                raise CheerfulError(
                    f"EC2 granted no instance ({'; '.join(launch.errors) or 'no reason'}); the job "
                    f"is kept: try other --type, or go on later with: {resume}"
                )
            status = job.wait(progress=_CostBar(RichBar(err.console), workers, job.id))
        except KeyboardInterrupt:
            stopped_by = signals.first or signal.SIGINT
            err.print(f"\ninterrupted ({stopped_by.name}): terminating the job's cloud workers")
        finally:
            signals.stopping()
            if workers.launch is not None:
                gone = workers.stop()
                dollars, _ = workers.spent()
                err.print(f"terminated {plural(len(gone), 'instance')}; about ${dollars:.4f} spent")
    if stopped_by is not None:
        left = job.status()
        err.print(
            f"job {job.id} is kept ({left}); its results so far stay in the store. Go on with:"
            f"\n  {resume}\nor on this machine:\n  {command_line('worker', backend, '--job', job.id)}"
        )
        sys.exit(128 + stopped_by)
    return status


class _CostBar:
    """The progress bar, with the dollars spent so far; stops waiting at the budget."""

    def __init__(self, bar: Any, workers: Any, job: str) -> None:
        self.bar, self.workers, self.job = bar, workers, job

    def __call__(self, **event: Any) -> None:
        dollars, running = self.workers.spent()
        event["description"] = f"job {self.job}: {running} worker(s), ${dollars:.4f} so far"
        self.bar(**event)
        if event.get("event") == "advance" and self.workers.over_budget():
            budget = self.workers.options["max_dollars"]
            raise CheerfulError(
                f"job {self.job} stopped on its budget of ${budget:g} (${dollars:.4f} spent): "
                "nothing is lost, more workers later resume it"
            )
