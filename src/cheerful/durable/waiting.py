"""Waiting for a durable job to settle: :func:`wait_for`, the loop behind ``Job.wait``.

It polls the job's status (exact counts at least every :data:`EXACT_EVERY_S`, estimates
from the workers' counters between), polls less often while nothing changes, says once
when no worker takes a task, and bears a store or queue that fails for a while (a
throttled S3 must not end a wait on a job that goes on).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import Any, Protocol

from cheerful.errors import BackendError, JobError, WaitTimeout

EXACT_EVERY_S = 5.0
"""``wait`` counts from the listing of results at least this often (between, while tasks
run, from the workers' counters), and as soon as those count every task."""
REMOTE_EXACT_EVERY_S = 30.0
"""The same on a remote store (S3), where a big job's listing is many paid requests."""
NO_WORKER_S = 60.0
"""``wait`` says so once when no worker has taken a task of the job for this long."""
WAIT_FAILING_S = 300.0
"""How long ``wait`` bears a store or queue that keeps failing before it raises."""
LONGEST_POLL_S = 5.0
"""``wait`` polls less often while nothing changes, down to once this often."""


class Waitable(Protocol):
    """What :func:`wait_for` needs of a job (a :class:`~cheerful.durable.job.Job`)."""

    id: str
    backend: Any

    @property
    def tasks(self) -> int:
        """How many tasks the job has."""

    def status(self, *, exact: bool = True) -> Any:
        """The job's status now."""


def wait_for(
    job: Waitable,
    progress: bool | Callable[..., Any] = True,
    timeout: float | None = None,
    poll: float = 0.5,
) -> Any:
    """Block until every task of ``job`` has its final outcome, or the job is cancelled;
    return the last status (see ``Job.wait``)."""
    from cheerful.progress import reporter

    deadline = None if timeout is None else time.monotonic() + timeout
    quiet, last, pause, exact_at = _Quiet(job), None, poll, 0.0
    every = REMOTE_EXACT_EVERY_S if job.backend.store.remote else EXACT_EVERY_S
    troubles = _Troubles()
    with reporter(progress, job.tasks, f"job {job.id}") as report:
        while True:
            exact = time.monotonic() >= exact_at or last is None or last.finished
            exact_at = time.monotonic() + every if exact else exact_at
            status = troubles.read(job, exact)
            if status is None:  # the store or queue failed: the job goes on, ask again
                time.sleep(min(LONGEST_POLL_S, poll * 4))
                continue
            _advance(report, status)
            if status.settled or (status.cancelled and not status.running):
                return status
            if status.incomplete:
                raise JobError(f"job {job.id}: {status.incomplete}")
            quiet.check(status)
            pause = poll if status != last else min(LONGEST_POLL_S, pause * 1.5)
            last = status
            left = math.inf if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(f"job {job.id} is not finished after {timeout} s: {status}")
            time.sleep(min(pause, left))


class _Troubles:
    """Failures of the store or queue while waiting: said once, borne for
    :data:`WAIT_FAILING_S` (a throttled or briefly unreachable S3 must not end a wait on a
    job that goes on), then raised."""

    def __init__(self) -> None:
        self.since: float | None = None

    def read(self, job: Waitable, exact: bool) -> Any:
        try:
            status = job.status(exact=exact)
        except BackendError as exc:
            now = time.monotonic()
            if self.since is None:
                self.since = now
                warnings.warn(f"reading job {job.id} failed, trying again: {exc}", stacklevel=4)
            if now - self.since > WAIT_FAILING_S:
                raise
            return None
        self.since = None
        return status


class _Quiet:
    """Says once, during a wait, that no worker has taken a task of the job for a while."""

    def __init__(self, job: Waitable) -> None:
        self.job, self.since, self.said = job, time.monotonic(), False
        self.seen: tuple[int, int] | None = None

    def check(self, status: Any) -> None:
        progress = (status.done + status.failed + status.dead, status.running)
        if status.running or status.workers or progress != self.seen:
            self.since, self.seen = time.monotonic(), progress
            return
        if not self.said and time.monotonic() - self.since >= NO_WORKER_S:
            self.said = True
            url = self.job.backend.url
            where = "" if url.endswith("/.cheerful") else f" --backend '{url}'"
            warnings.warn(
                f"no worker has taken a task of job {self.job.id} for {NO_WORKER_S:.0f} s: "
                f"start one with `cheerful worker --job {self.job.id}{where}`, or "
                "job.run_local() from Python",
                UserWarning,
                stacklevel=4,
            )


def _advance(report, status: Any) -> None:
    settled = status.done + status.failed + status.dead
    failed = status.failed + status.dead
    report.advance(max(0, settled - report.done), max(0, failed - report.failed))
