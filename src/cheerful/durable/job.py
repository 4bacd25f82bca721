"""Observe and steer a durable job from any process or machine: :class:`Job`.

A ``Job`` reads what workers stored (``results/`` records and their summaries, ``logs/``,
the workers' ``status/`` counters), the job's retry rounds and the queue's dead letters;
it writes only retry rounds (:mod:`.retry`) and the ``cancelled`` marker (and
:meth:`Job.delete` removes everything). The store layout (:mod:`cheerful.durable.layout`)
is the protocol between the two sides; see ``docs/durable.md``.

Its counts are what the store holds (:mod:`.counts`): exact as soon as no task is running
(one listing of ``results/``, no record read), estimates from the workers' counters only
while tasks run, and always adding up to the job's tasks. A worker killed at any instant
cannot make them lie: a settled job's status, ``results()`` and ``failures()`` agree.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cheerful.errors import (
    ConfigError,
    JobError,
    JobNotFound,
    ObjectNotFound,
)
from cheerful.task import Failure

from . import layout
from .backends import Backend, open_backend
from .code import replacement_code
from .counts import count, is_submitted, list_results, read_reports
from .outputs import download_outputs, read_outputs
from .records import (
    MISSING,
    JobView,
    TaskFailure,
    dead_chunks,
    job_failed,
    read_records,
    read_view,
)
from .retry import retry
from .rounds import ChunkPlan, read_plan, sender_gone
from .sending import mark_cancelled
from .waiting import wait_for

if TYPE_CHECKING:
    from .fleet.local import LocalFleet

__all__ = ["Job", "JobStatus", "TaskFailure", "cancelled_key", "jobs"]

BackendLike = str | Backend
Errors = Literal["raise", "return"]


def cancelled_key(job_id: str) -> str:
    """The key whose presence marks a job cancelled (workers delete its messages)."""
    return layout.cancelled(job_id)


@dataclass(frozen=True)
class JobStatus:
    """Task counts of a job: ``done + failed + dead + running + queued + dropped`` is
    always ``total``. ``queued``: no outcome yet, not running; ``dropped``: will never run
    (the job was cancelled first); ``workers``: workers that reported on the job lately.
    ``settled``: every task has its final outcome, the counts are exact. ``incomplete``:
    why some tasks were never sent (a submit or retry cut short), else ""."""

    total: int
    queued: int
    running: int
    done: int
    failed: int
    dead: int
    cancelled: bool = False
    workers: int = 0
    dropped: int = 0
    settled: bool = False
    incomplete: str = ""

    @property
    def finished(self) -> bool:
        """True when every task is done, failed or dead."""
        return self.settled or self.done + self.failed + self.dead >= self.total

    @property
    def state(self) -> str:
        """One word: "queued", "running", "waiting" (some tasks have an outcome, none runs
        now), "done", "failed" (some failed or dead), "cancelled" or "incomplete"."""
        if self.finished and not self.dropped:
            return "failed" if self.failed or self.dead else "done"
        if self.cancelled:
            return "cancelled"
        if self.incomplete:
            return "incomplete"
        if self.running:
            return "running"
        return "waiting" if self.done or self.failed or self.dead else "queued"

    def __str__(self) -> str:
        dropped = f", {self.dropped} dropped" if self.dropped else ""
        state = " (cancelled)" if self.cancelled and not self.settled else ""
        return (
            f"{self.done}/{self.total} done, {self.failed} failed, {self.dead} dead, "
            f"{self.running} running, {self.queued} queued{dropped}{state}"
        )


class Job:
    """A durable job in a backend: made by ``cf.submit*``, found again by :meth:`attach`."""

    def __init__(self, job_id: str, backend: BackendLike, manifest: dict[str, Any]) -> None:
        self.id = job_id
        self.backend = open_backend(backend)
        self.manifest = manifest

    @classmethod
    def attach(cls, job_id: str, backend: BackendLike = "local") -> Job:
        """The job ``job_id`` of ``backend``, from any process; raises
        :class:`~cheerful.errors.JobNotFound` (listing the known ids) if there is none."""
        backend = open_backend(backend)
        try:
            data = backend.store.get(layout.manifest(layout.validate_id(job_id)))
        except ObjectNotFound:
            known = _job_ids(backend)
            listed = ", ".join(known[-20:]) if known else "none"
            raise JobNotFound(
                f"no job {job_id!r} in backend {backend.url}; known jobs: {listed}"
            ) from None
        return cls(job_id, backend, layout.readable_manifest(job_id, json.loads(data)))

    def __repr__(self) -> str:
        return f"Job({self.id!r}, tasks={self.tasks}, backend={self.backend.url!r})"

    @property
    def name(self) -> str | None:
        """The name given at submit, if any."""
        return self.manifest.get("name")

    @property
    def tasks(self) -> int:
        """How many tasks the job has."""
        return int(self.manifest["tasks"])

    @property
    def created(self) -> float:
        """When the job was submitted (unix time)."""
        return float(self.manifest["created"])

    # Reading.

    def status(self, *, exact: bool = True) -> JobStatus:
        """Task counts: the outcomes from one listing of the results (exact; no result is
        read), the running tasks from the workers that reported lately. ``exact=False``
        reads only the workers' counters while tasks run (cheaper, for polling; estimates)."""
        self._refresh()
        store, plan = self.backend.store, self._plan()
        dead = dead_chunks(self.backend.queue, store, self.id, plan)
        cancelled = store.exists(cancelled_key(self.id))
        submitted = is_submitted(store, self.id)
        now = time.time()
        reports = [r for r in read_reports(store, self.id) if r.fresh(now)]
        running = sum(r.running for r in reports)
        incomplete = self._incomplete(plan, submitted, now)
        if exact or not running:
            listing = list_results(store, self.id, plan.end)
            c = count(store, plan, listing, dead, submitted=submitted)
            running = min(running, c.missing)
            waiting = 0 if cancelled else c.missing - running
            return JobStatus(
                self.tasks,
                waiting,
                running,
                c.done,
                c.failed,
                c.dead,
                cancelled,
                len(reports),
                dropped=c.missing - running - waiting,
                settled=c.settled,
                incomplete=incomplete,
            )
        # Estimates, bounded so that they always add up to the job's tasks.
        room = self.tasks - sum(len(d.indices) for d in dead if not plan.is_retry(d.chunk))
        dead_tasks = self.tasks - room
        running = min(running, room)
        done = min(sum(r.done for r in reports), room - running)
        resent = sum(r.tasks for r in plan.rounds)
        failed = min(max(0, sum(r.failed for r in reports) - resent), room - running - done)
        left = room - running - done - failed
        queued = 0 if cancelled else left
        return JobStatus(
            self.tasks,
            queued,
            running,
            done,
            failed,
            dead_tasks,
            cancelled,
            len(reports),
            dropped=left - queued,
            incomplete=incomplete,
        )

    def wait(
        self,
        progress: bool | Callable[..., Any] = True,
        timeout: float | None = None,
        poll: float = 0.5,
    ) -> JobStatus:
        """Block until every task has its final outcome, or the job is cancelled; return
        the status. After ``timeout`` seconds raise :class:`~cheerful.errors.WaitTimeout`
        (the job goes on). A job whose submit was cut short raises
        :class:`~cheerful.errors.JobError` (some tasks were never sent). When no worker takes
        a task for a minute, a warning says how to start one. ``progress``: True (a bar),
        False, or a callback."""
        return wait_for(self, progress, timeout, poll)

    def results(
        self, errors: Errors = "raise", *, wait: bool = True, timeout: float | None = None
    ) -> list[Any]:
        """The tasks' results in input order; waits for the job first unless ``wait=False``.

        With ``errors="raise"`` failed or dead tasks raise :class:`~cheerful.errors.JobFailed`
        (``.failures`` lists them; the first task's own exception is its ``__cause__``);
        with ``"return"`` their slots hold a :class:`cheerful.Failure`.
        """
        if errors not in ("raise", "return"):
            raise ConfigError(f'errors must be "raise" or "return", not {errors!r}')
        if wait:
            self.wait(progress=False, timeout=timeout)
        view = self._view()
        pending, failed = view.pending(), view.failed()
        if errors == "raise" and pending:
            raise JobError(self._pending_text(view, len(pending)))
        if errors == "raise" and failed:
            raise job_failed(self.id, self.tasks, view, failed)
        for index in failed:
            failure = view.failure(index)
            view.values[index] = Failure(view.exception(index), failure.traceback, index)
        for index in pending:
            view.values[index] = Failure(JobError(self._pending_text(view, 1)), "", index)
        return view.values

    def failures(self) -> list[TaskFailure]:
        """Every failed or dead task, in index order."""
        view = self._view()
        return [view.failure(index) for index in view.failed()]

    def logs(self, index: int, attempt: int | None = None) -> str:
        """What task ``index`` printed (stdout + stderr): in its last attempt, or in
        ``attempt`` (1 = the first); "" if nothing."""
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < self.tasks:
            raise ConfigError(f"task {index} is out of range: the job has {self.tasks} tasks")
        if attempt is not None and (not isinstance(attempt, int) or attempt < 1):
            raise ConfigError(f"attempt must be a whole number from 1, not {attempt!r}")
        key = self._log_key(index) if attempt is None else layout.log(self.id, index, attempt)
        try:
            return self.backend.store.get(key).decode("utf-8", errors="replace") if key else ""
        except ObjectNotFound:
            return ""

    def results_frame(self) -> Any:
        """The results as a ``pandas.DataFrame``, one row per task: its env or input, its
        result (a dict spread into columns), status, error, attempts, seconds, worker
        (see :mod:`cheerful.durable.frame`; ``pip install 'cheerful[frame]'``)."""
        from .frame import results_frame

        return results_frame(self)

    def files(self, index: int) -> dict[str, bytes]:
        """The files task ``index`` left in its output directory (``cf.output_dir()``,
        ``$CHEERFUL_OUTPUT_DIR``) in the attempt its result came from, by path."""
        found = self._attempt_of(index)
        return {} if found is None else read_outputs(self.backend.store, self.id, index, found)

    def download_files(self, directory: str | os.PathLike[str]) -> dict[int, int]:
        """Write every task's output files to ``directory/<task>/...``; return how many
        files each task that left some had."""
        view, root, counts, store = self._view(), Path(directory), {}, self.backend.store
        stored = set(store.list(layout.outputs_prefix(self.id)))  # one listing: no blind reads
        for index, state in enumerate(view.state):
            attempt = view.attempts.get(index, 1)
            if state != MISSING and layout.output(self.id, index, attempt) in stored:
                count = download_outputs(store, self.id, index, attempt, root / str(index))
                if count:
                    counts[index] = count
        return counts

    # Acting.

    def retry_failed(
        self,
        fn: Callable | None = None,
        *,
        script: str | os.PathLike[str] | None = None,
        command: str | Sequence[str] | None = None,
    ) -> int:
        """Send the failed and the dead tasks again; return how many tasks were sent.

        Safe to repeat and to run while workers run: a task already sent again and still
        waiting for its outcome is not sent twice. Failed tasks go as new chunks numbered
        after the last one; dead chunks go back to the queue as they were; a retry that
        was cut short is finished. Their newest outcome then replaces the old one, and
        attempts are numbered on from the earlier ones (whose logs stay). ``fn`` (a
        function job), ``script`` (a script job) or ``command`` (a command job) replaces
        the job's code for the tasks sent now: fixed code for the failures.
        """
        self._refresh()
        kind = str(self.manifest.get("kind", "function"))
        code = replacement_code(kind, fn=fn, script=script, command=command)
        return retry(self.backend, self.id, self.manifest, code).total

    def cancel(self) -> bool:
        """Mark the job cancelled: workers drop its remaining chunks; stored results stay.
        Return False if it was cancelled already; a job that has finished cannot be
        cancelled (:class:`~cheerful.errors.JobError`)."""
        status = self.status(exact=True)
        if status.settled:
            raise JobError(f"job {self.id} has finished ({status}): nothing to cancel")
        return mark_cancelled(self.backend, self.id)

    def delete(self) -> int:
        """Delete everything stored for the job (manifest, code, inputs, results, logs)
        and its messages, queued or dead (on SQS, its queues); return how many objects
        were deleted from the store."""
        self.backend.queue.delete_group(self.id)
        return self.backend.store.delete_prefix(layout.job_prefix(self.id))

    def run_local(self, workers: int = 1, *, slots: int | None = None) -> LocalFleet:
        """Start ``workers`` worker processes on this machine for this job and return them
        (a :class:`~cheerful.durable.fleet.local.LocalFleet`; ``with job.run_local(2):``
        stops them on leaving the block). They leave by themselves once the job is settled.
        ``slots``: tasks each runs at once (default: the cores, shared out)."""
        from .fleet.local import LocalFleet

        if slots is None and isinstance(workers, int) and workers > 1:
            slots = max(1, (os.cpu_count() or 1) // workers)
        return LocalFleet(self.backend, workers, job=self.id, slots=slots).start()

    # Internals.

    def _refresh(self) -> None:
        try:
            data = self.backend.store.get(layout.manifest(self.id))
        except ObjectNotFound:
            raise JobNotFound(f"job {self.id} is gone from {self.backend.url}") from None
        self.manifest = layout.readable_manifest(self.id, json.loads(data))

    def _plan(self) -> ChunkPlan:
        return read_plan(self.backend.store, self.id, self.manifest)

    def _view(self) -> JobView:
        self._refresh()
        return read_view(self.backend, self.id, self._plan())

    def _incomplete(self, plan: ChunkPlan, submitted: bool, now: float) -> str:
        """Why tasks were never sent (a submit or a retry cut short), or ""."""
        if not submitted and sender_gone(self.manifest.get("submitter"), self.created, now):
            return (
                "its submit was cut short before every task was sent; the tasks sent run, "
                "the others never will: submit the job again (and cancel this one)"
            )
        for r in plan.rounds:
            if not r.sent and sender_gone(r.by, r.at, now):
                return (
                    f"its retry round {r.number} was cut short before every task was sent: "
                    f"finish it with `cheerful retry {self.id}` (or job.retry_failed())"
                )
        return ""

    def _attempt_of(self, index: int) -> int | None:
        """The attempt of task ``index`` its newest record holds (None: no record yet)."""
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < self.tasks:
            raise ConfigError(f"task {index} is out of range: the job has {self.tasks} tasks")
        self._refresh()
        plan = self._plan()
        chunks = [c for c in plan.numbers() if index in (plan.expected(c) or ())]
        found = None
        for record in read_records(self.backend.store, self.id, chunks, plan):
            found = record.attempts.get(index, 1)
        return found

    def _log_key(self, index: int) -> str:
        """The key of the last log of task ``index``: from its newest record, else the
        highest attempt stored (a task still running, or dead)."""
        self._refresh()
        plan = self._plan()
        chunks = [c for c in plan.numbers() if index in (plan.expected(c) or ())]
        key = None
        for record in read_records(self.backend.store, self.id, chunks, plan):
            key = record.logs.get(index, "")
        if key is not None:
            return key
        tries = (int(self.manifest.get("retries", 0)) + 1) * len(chunks)
        present = [layout.log(self.id, index, a) for a in range(1, tries + 1)]
        present = [k for k in present if self.backend.store.exists(k)]
        return present[-1] if present else ""

    def _pending_text(self, view: JobView, count: int) -> str:
        if view.cancelled:
            return f"job {self.id} was cancelled: {count} task(s) never ran"
        return (
            f"job {self.id} is not finished: {count} of {self.tasks} task(s) have no result "
            "yet; job.wait() for them, or use results(wait=False, errors='return')"
        )


def _job_ids(backend: Backend) -> list[str]:
    """Ids of the jobs that have a manifest (not those half deleted or half submitted)."""
    names = backend.store.children(layout.jobs_prefix())  # one level: not every result key
    ids = layout.job_ids_from_keys(f"{layout.jobs_prefix()}/{name}" for name in names)
    return [job_id for job_id in ids if backend.store.exists(layout.manifest(job_id))]


def jobs(backend: BackendLike = "local") -> list[Job]:
    """Every job of ``backend``, oldest first."""
    backend = open_backend(backend)
    found = []
    for job_id in _job_ids(backend):
        try:
            found.append(Job.attach(job_id, backend))
        except JobNotFound:  # half deleted, or still being submitted
            continue
    return sorted(found, key=lambda job: (job.created, job.id))
