"""``cf.Executor`` on a durable plan: each batch of calls the executor sends is one job.

:class:`JobPool` is the plan's :class:`~cheerful.pool.Pool`: :meth:`~JobPool.send` submits
the chunk's calls as a job (the tasks keep the executor's numbers, so seeds match every
plan), :meth:`~JobPool.wait` reads each job's new results and reports a chunk
:class:`~cheerful.pool.Done` once its job is settled. At most :data:`JOBS_AT_ONCE` jobs are
out at a time, and the chunks sent within :data:`GATHER_S` of each other go as one job
(an executor sends each call as it comes; a job per call would be slow). Workers
the plan starts (``workers=N``) serve every job of the backend until the pool closes;
cloud workers are launched per ``cf.map`` only.
"""

from __future__ import annotations

import select
import time
from typing import Any

from cheerful.errors import ConfigError
from cheerful.pool import Done, Pool, Work
from cheerful.serialize import loads
from cheerful.task import ChunkResult

from .stream import JobRun, open_plan_backend, submit_planned
from .workers import CloudWorkers, JobWorkers

__all__ = ["JOBS_AT_ONCE", "JobPool"]

JOBS_AT_ONCE = 4
"""Jobs an executor has out at once (each a batch of the calls submitted meanwhile)."""
GATHER_S = 0.05
"""Chunks sent within this long of the first one of a batch go as one job."""


class JobPool(Pool):
    """The pool of a durable plan (see the module docstring)."""

    workers = JOBS_AT_ONCE

    def __init__(self, plan: Any, cores: int) -> None:
        if isinstance(plan.workers, CloudWorkers):
            raise ConfigError(
                "cf.Executor on a durable plan takes workers=None (workers already run) or a "
                "number of local workers; cloud workers are launched for a cf.map, or start "
                "them with `cheerful fleet up` and use workers=None"
            )
        self.plan = plan
        self.backend = open_plan_backend(plan.backend)
        self.runs: dict[str, tuple[list[Work], JobRun, list[ChunkResult]]] = {}  # by job
        self.batch: list[Work] = []  # sent, not submitted yet
        self.batch_since = 0.0
        self.starters = JobWorkers(plan, self.backend, None, nested=False)
        self.starters.start()

    def idle(self) -> int:
        return max(0, JOBS_AT_ONCE - len(self.runs))

    def send(self, work: Work) -> None:
        if not self.batch:
            self.batch_since = time.monotonic()
        self.batch.append(work)

    def _submit_batch(self) -> None:
        works, self.batch = self.batch, []
        first = works[0]
        fn = first.fn if first.fn is not None else loads(first.fn_bytes)
        items = [item for work in works for item in work.chunk.items]
        indices = tuple(i for work in works for i in work.chunk.indices)
        job = submit_planned(
            self.plan,
            self.backend,
            fn,
            items,
            star=first.chunk.star,
            inner=tuple(first.levels),
            seed=first.seed,
            indices=indices,
        )
        self.runs[job.id] = (works, JobRun(self.plan, job, indices), [])

    def wait(self, timeout: float | None = None, wakeup: int | None = None) -> list[Done]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.batch and time.monotonic() - self.batch_since >= GATHER_S:
                self._submit_batch()
            done = self._step()
            left = None if deadline is None else deadline - time.monotonic()
            if done or not (self.runs or self.batch) or (left is not None and left <= 0):
                return done
            self.starters.check(time.monotonic())
            pause = GATHER_S if self.batch else self.plan.poll
            pause = pause if left is None else min(pause, left)
            if wakeup is None:
                time.sleep(pause)
            elif select.select([wakeup], [], [], pause)[0]:
                return done  # new calls were submitted: the executor sends them

    def _step(self) -> list[Done]:
        done = []
        now = time.monotonic()
        for job_id, (works, run, parts) in list(self.runs.items()):
            parts.extend(run.step(now))
            if run.done:
                del self.runs[job_id]
                done.extend(Done(work.work_id, _merged(work, parts)) for work in works)
        return done

    def abandon(self) -> None:
        self.batch = []
        for _, run, _ in self.runs.values():
            run.cancel()
        self.runs.clear()

    def close(self, *, kill: bool = False) -> None:
        if kill:
            self.abandon()
        self.starters.stop(settled=not kill, wait=True)


def _merged(work: Work, parts: list[ChunkResult]) -> ChunkResult:
    """One chunk's result from the pieces of its batch's job, in the chunk's order."""
    values: dict[int, Any] = {}
    errors = {}
    seconds = 0.0
    for part in parts:
        values.update(zip(part.indices, part.values, strict=True))
        errors.update(part.errors or {})
        seconds += part.seconds
    indices = list(work.chunk.indices)
    mine = {i: errors[i] for i in indices if i in errors}
    return ChunkResult(indices, [values.get(i) for i in indices], mine, seconds)
