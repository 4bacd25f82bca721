"""Observe and steer a durable job from any process or machine: :class:`Job`.

A ``Job`` reads what workers stored (``results/<chunk>`` records, ``logs/``, the workers'
``status/`` counters) and the queue's dead letters; it writes only the manifest's
``resent`` history, new chunks for :meth:`Job.retry_failed` and the ``cancelled`` marker
(and :meth:`Job.delete` removes everything).
The store layout (:mod:`cheerful.durable.layout`) is the protocol between the two sides; see
``docs/durable.md``.

A chunk's inputs ride inline in its message when they fit, else they are stored at
``inputs/<chunk>`` and the message names them. A worker that records a chunk with failed
tasks stores its inline inputs there too, so ``retry_failed`` can send failed tasks again
from anywhere; a chunk that succeeds costs no input object (one request fewer per chunk
on S3).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from cheerful.errors import (
    ConfigError,
    JobError,
    JobNotFound,
    ObjectNotFound,
    WaitTimeout,
)
from cheerful.task import Failure

from . import layout
from .backends import Backend, open_backend
from .records import (
    FAILED,
    InputReader,
    JobView,
    TaskFailure,
    dead_chunks,
    job_failed,
    read_records,
    read_view,
)
from .sending import json_bytes, mark_cancelled, send_chunks

__all__ = ["Job", "JobStatus", "TaskFailure", "cancelled_key", "jobs"]

BackendLike = str | Backend
Errors = Literal["raise", "return"]

SETTLE_EVERY = 20
"""``wait`` confirms completion from the listing of results at least every this many polls."""


def cancelled_key(job_id: str) -> str:
    """The key whose presence marks a job cancelled (workers delete its messages)."""
    return layout.cancelled(job_id)


@dataclass(frozen=True)
class JobStatus:
    """Task counts of a job. ``queued`` is what is neither finished nor running."""

    total: int
    queued: int
    running: int
    done: int
    failed: int
    dead: int
    cancelled: bool = False
    workers: int = 0

    @property
    def finished(self) -> bool:
        """True when every task is done, failed or dead."""
        return self.done + self.failed + self.dead >= self.total

    @property
    def state(self) -> str:
        """One word: "queued", "running", "done", "failed" (some failed or dead) or
        "cancelled"."""
        if self.cancelled:
            return "cancelled"
        if self.finished:
            return "failed" if self.failed or self.dead else "done"
        return "running" if self.running or self.done or self.failed else "queued"

    def __str__(self) -> str:
        state = " (cancelled)" if self.cancelled else ""
        return (
            f"{self.done}/{self.total} done, {self.failed} failed, {self.dead} dead, "
            f"{self.running} running, {self.queued} queued{state}"
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

    def status(self) -> JobStatus:
        """Task counts, from the workers' counters and the dead letters (cheap: no results
        are read). Approximate while workers run; :meth:`wait` returns a settled one."""
        self._refresh()
        store, total = self.backend.store, self.tasks
        sums = {"done": 0, "failed": 0, "running": 0}
        keys = list(store.list(layout.status_prefix(self.id)))
        for key in keys:
            counters = _counters(store, key)
            for name in sums:
                sums[name] += counters.get(name, 0)
        resent = sum(entry.get("failed", 0) for entry in self.manifest.get("resent", ()))
        dead = sum(len(d.indices) for d in dead_chunks(self.backend, self.id))
        done, running = min(sums["done"], total), sums["running"]
        failed = max(0, min(sums["failed"] - resent, total - done))
        queued = max(0, total - done - failed - dead - running)
        cancelled = store.exists(cancelled_key(self.id))
        return JobStatus(total, queued, running, done, failed, dead, cancelled, len(keys))

    def wait(
        self,
        progress: bool | Callable[..., Any] = True,
        timeout: float | None = None,
        poll: float = 0.5,
    ) -> JobStatus:
        """Block until every task is done, failed or dead, or the job is cancelled; return
        the status. After ``timeout`` seconds raise :class:`~cheerful.errors.WaitTimeout`
        (the job goes on). ``progress``: True (a bar), False, or a callback."""
        from cheerful.progress import reporter

        deadline = None if timeout is None else time.monotonic() + timeout
        with reporter(progress, self.tasks, f"job {self.id}") as report:
            for polls in itertools.count():
                status = self.status()
                if status.cancelled:
                    return status
                if (status.finished or polls % SETTLE_EVERY == 0) and self._settled():
                    status = _settled_status(status)
                    _advance(report, status)
                    return status
                _advance(report, status)
                left = math.inf if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeout(f"job {self.id} is not finished after {timeout} s: {status}")
                time.sleep(min(poll, left))
        raise AssertionError("not reached")  # pragma: no cover

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

    # Acting.

    def retry_failed(self) -> int:
        """Send the failed and the dead tasks again; return how many tasks were sent.

        Failed tasks go as new chunks numbered after the last one (in the job's queue
        group, as at submit); dead chunks go back to the queue as they were, in their
        group. Their newest outcome then replaces the old one.
        """
        view = self._view()
        if view.cancelled:
            raise JobError(f"job {self.id} is cancelled; submit it again instead")
        failed = [i for i, s in enumerate(view.state) if s == FAILED]
        dead = dead_chunks(self.backend, self.id)
        if not failed and not dead:
            return 0
        size, first = int(self.manifest["chunk_size"]), self._next_chunk()
        spans = [failed[start : start + size] for start in range(0, len(failed), size)]
        dead_tasks = sum(len(d.indices) for d in dead)
        if spans:
            self._claim(first)
        entry = {"at": time.time(), "first_chunk": first, "chunks": len(spans)}
        entry.update(failed=len(failed), dead=dead_tasks)
        self.manifest.setdefault("resent", []).append(entry)
        self.backend.store.put(layout.manifest(self.id), json_bytes(self.manifest))
        if dead:
            self.backend.queue.redrive_dead([d.message_id for d in dead], group=self.id)
        inputs = InputReader(self.backend.store, self.id, size)
        send_chunks(self.backend, self.id, enumerate(spans, start=first), inputs.items, "retrying")
        return len(failed) + dead_tasks

    def cancel(self) -> bool:
        """Mark the job cancelled: workers drop its remaining chunks; stored results stay.
        Return False if it was cancelled already."""
        return mark_cancelled(self.backend, self.id)

    def delete(self) -> int:
        """Delete everything stored for the job (manifest, code, inputs, results, logs)
        and its messages, queued or dead (on SQS, its queues); return how many objects
        were deleted from the store."""
        self.backend.queue.delete_group(self.id)
        return self.backend.store.delete_prefix(layout.job_prefix(self.id))

    # Internals.

    def _refresh(self) -> None:
        try:
            data = self.backend.store.get(layout.manifest(self.id))
        except ObjectNotFound:
            raise JobNotFound(f"job {self.id} is gone from {self.backend.url}") from None
        self.manifest = layout.readable_manifest(self.id, json.loads(data))

    def _next_chunk(self) -> int:
        ends = [e["first_chunk"] + e["chunks"] for e in self.manifest.get("resent", ())]
        return max([int(self.manifest["chunks"]), *ends])

    def _claim(self, chunk: int) -> None:
        if not self.backend.store.put_if_absent(layout.input(self.id, chunk), b""):
            raise JobError(f"job {self.id}: another retry is under way; try again later")

    def _view(self) -> JobView:
        self._refresh()
        return read_view(self.backend, self.id, self.tasks)

    def _settled(self) -> bool:
        """Every chunk ever sent has a result or is dead (one listing of keys, no reads)."""
        self._refresh()
        keys = self.backend.store.list(layout.results_prefix(self.id))
        covered = {layout.chunk_of_result_key(key) for key in keys}
        covered.update(dead.chunk for dead in dead_chunks(self.backend, self.id))
        return all(chunk in covered for chunk in range(self._next_chunk()))

    def _log_key(self, index: int) -> str:
        """The key of the last log of task ``index``: from its newest record, else the
        highest attempt stored (a task still running, or dead)."""
        self._refresh()
        retry_chunks = range(int(self.manifest["chunks"]), self._next_chunk())
        chunks = [index // int(self.manifest["chunk_size"]), *retry_chunks]
        key = None
        for record in read_records(self.backend.store, self.id, chunks):
            if index in record.result.indices:
                key = record.logs.get(index, "")
        if key is not None:
            return key
        attempts = range(1, int(self.manifest.get("retries", 0)) + 2)
        present = [layout.log(self.id, index, a) for a in attempts]
        present = [k for k in present if self.backend.store.exists(k)]
        return present[-1] if present else ""

    def _pending_text(self, view: JobView, count: int) -> str:
        if view.cancelled:
            return f"job {self.id} was cancelled: {count} task(s) never ran"
        return (
            f"job {self.id} is not finished: {count} of {self.tasks} task(s) have no result "
            "yet; job.wait() for them, or use results(wait=False, errors='return')"
        )


def _settled_status(status: JobStatus) -> JobStatus:
    """Every task has an outcome: what is not failed or dead is done (counters of a worker
    killed between storing a result and counting it would say less)."""
    done = status.total - status.failed - status.dead
    return JobStatus(status.total, 0, 0, done, status.failed, status.dead, False, status.workers)


def _advance(report, status: JobStatus) -> None:
    settled = status.done + status.failed + status.dead
    failed = status.failed + status.dead
    report.advance(max(0, settled - report.done), max(0, failed - report.failed))


def _counters(store, key: str) -> dict[str, int]:
    try:
        data = json.loads(store.get(key))
    except (ObjectNotFound, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, int) and not isinstance(v, bool)}


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
