"""What is going on in a backend, read often and cheaply: its jobs and its nodes.

``cheerful status --watch`` and ``cheerful dashboard`` refresh every few seconds from the
store and the queue, with no process beside the workers. :class:`Overview` keeps the cost
of a refresh in O(nodes), not O(chunks): the nodes' heartbeats (one listing and one read
per node) carry each worker's counters per job, which estimate a running job's progress;
a job's exact counts (one listing of its results, :mod:`.counts`) are read only every
:data:`EXACT_EVERY_S` while it runs, and once a job is settled its status is kept until a
retry changes it. Manifests never change and are read once. Throughput over time is
sampled in memory, from the refreshes.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from cheerful.errors import ConfigError, JobNotFound

from . import layout
from .backends import Backend
from .job import Job, JobStatus
from .records import TaskFailure
from .stores.many import get_many
from .worker.node import LOST_AFTER_S

__all__ = ["EXACT_EVERY_S", "HISTORY", "JobView", "NodeView", "Overview"]

EXACT_EVERY_S = 30.0
"""While a job runs, its exact counts are read this often (between, estimates)."""
COUNTED_OUT_EXACT_S = 5.0
"""Once the estimates count every task, the exact counts are read this often (not only every
:data:`EXACT_EVERY_S`): a job shows settled within seconds."""
HISTORY = 720
"""Throughput samples kept per job (an hour at one every 5 s)."""


@dataclass(frozen=True)
class NodeView:
    """A worker's last heartbeat, and whether it is lost (too old)."""

    worker: str
    beat: dict[str, Any]
    age: float
    lost: bool

    @property
    def state(self) -> str:
        """The worker's own state, or "lost"."""
        stopped = self.beat.get("state") in ("stopped", "interrupted")
        return "lost" if self.lost and not stopped else str(self.beat.get("state", "?"))

    def serves(self, job: str) -> bool:
        """True if the worker has counted tasks of ``job`` (or runs some)."""
        return job in (self.beat.get("jobs") or {})


@dataclass(frozen=True)
class JobView:
    """One job in the overview: its status (exact or estimated), rate, time left."""

    id: str
    name: str
    kind: str
    label: str
    created: float
    status: JobStatus
    exact: bool
    rate: float | None = None  # tasks per second, lately
    eta: float | None = None  # seconds left at that rate
    samples: list[tuple[float, int]] = field(default_factory=list)


class Overview:
    """The jobs and nodes of ``backend``, refreshed by :meth:`refresh`."""

    def __init__(self, backend: Backend, *, clock: Any = time.time) -> None:
        self.backend, self.clock = backend, clock
        self.jobs: dict[str, Job] = {}
        self.views: dict[str, JobView] = {}
        self.nodes: list[NodeView] = []
        self._exact_at: dict[str, float] = {}
        self._settled: dict[str, tuple[JobStatus, int]] = {}  # job -> (status, rounds seen)
        self._history: dict[str, deque[tuple[float, int]]] = {}

    def refresh(self) -> None:
        """Read the nodes, then every job's status (see the module docstring)."""
        self.nodes = self.read_nodes()
        for job_id in self._job_ids():
            job = self.jobs.get(job_id)
            if job is None:
                try:
                    job = self.jobs[job_id] = Job.attach(job_id, self.backend)
                except (JobNotFound, ConfigError):  # half submitted, deleted, or older
                    continue
            self.views[job_id] = self._view(job)

    def read_nodes(self) -> list[NodeView]:
        """Every heartbeat in the backend, newest first (lost ones marked)."""
        store, now, found = self.backend.store, self.clock(), []
        for key, raw in get_many(store, store.list(layout.nodes_prefix())):
            try:
                worker = layout.node_of_key(key)
                beat = json.loads(raw) if raw is not None else None
            except (ConfigError, ValueError):
                continue
            if not isinstance(beat, dict):
                continue
            age = max(0.0, now - float(beat.get("updated") or 0))
            every = float(beat.get("every") or 10.0)
            found.append(NodeView(worker, beat, age, age > max(LOST_AFTER_S, 3 * every)))
        return sorted(found, key=lambda n: -float(n.beat.get("updated") or 0))

    def job_nodes(self, job: str) -> list[NodeView]:
        """The nodes that worked on ``job``."""
        return [n for n in self.nodes if n.serves(job)]

    def forget(self, job: str) -> None:
        """Drop what is kept of ``job`` (a settled status, when its exact counts are next
        due): the next refresh reads its exact status (after a retry or a cancel)."""
        self._settled.pop(job, None)
        self._exact_at.pop(job, None)

    def failures(self, job: str, limit: int = 50) -> list[TaskFailure]:
        """The latest failures of ``job`` (its records are read: on demand, not per refresh)."""
        return self.jobs[job].failures()[-limit:]

    # Internals.

    def _job_ids(self) -> list[str]:
        store = self.backend.store
        names = store.children(layout.jobs_prefix())
        return layout.job_ids_from_keys(f"{layout.jobs_prefix()}/{name}" for name in names)

    def _view(self, job: Job) -> JobView:
        now = self.clock()
        status, exact = self._status(job, now)
        history = self._history.setdefault(job.id, deque(maxlen=HISTORY))
        finished = status.done + status.failed + status.dead
        if not history or history[-1][1] != finished or now - history[-1][0] >= 5:
            history.append((now, finished))
        rate, eta = _rate(history, status)
        manifest = job.manifest
        return JobView(
            job.id,
            job.name or "",
            str(manifest.get("kind", "")),
            str(manifest.get("label", "")),
            job.created,
            status,
            exact,
            rate,
            eta,
            list(history),
        )

    def _status(self, job: Job, now: float) -> tuple[JobStatus, bool]:
        kept = self._settled.get(job.id)
        if kept is not None:
            rounds = len(list(self.backend.store.list(layout.rounds_prefix(job.id))))
            if rounds == kept[1]:  # no retry since: a settled job's counts stand
                return kept[0], True
            del self._settled[job.id]
        live = [n for n in self.nodes if n.serves(job.id) and not n.lost]
        due = now >= self._exact_at.get(job.id, 0.0)
        estimate = None if not live or due else _estimate(job, self.nodes, self.views.get(job.id))
        counted_out = (
            estimate is not None
            and estimate.finished
            and now >= self._exact_at.get(job.id, 0.0) - EXACT_EVERY_S + COUNTED_OUT_EXACT_S
        )
        if estimate is None or counted_out:  # the exact counts say whether it settled
            status = job.status(exact=True)
            self._exact_at[job.id] = now + EXACT_EVERY_S
            if status.settled:
                rounds = len(list(self.backend.store.list(layout.rounds_prefix(job.id))))
                self._settled[job.id] = (status, rounds)
            return status, True
        return estimate, False


def _estimate(job: Job, nodes: list[NodeView], last: JobView | None) -> JobStatus:
    """A running job's counts from the heartbeats' counters, never below the last exact
    ones and always adding up to its tasks."""
    counts = [(n.beat.get("jobs") or {}).get(job.id) or {} for n in nodes]
    done = sum(int(c.get("done", 0)) for c in counts)
    failed = sum(int(c.get("failed", 0)) for c in counts)
    running = sum(
        int(c.get("running", 0)) for n, c in zip(nodes, counts, strict=True) if not n.lost
    )
    base = last.status if last is not None else None
    total = job.tasks
    dead = base.dead if base is not None else 0
    done = max(done, base.done if base is not None else 0)
    room = total - dead
    running = min(running, room)
    done = min(done, room - running)
    failed = min(max(failed, base.failed if base is not None else 0), room - running - done)
    queued = room - running - done - failed
    status = JobStatus(total, queued, running, done, failed, dead, workers=len(nodes))
    if base is not None and base.cancelled:
        status = replace(status, cancelled=True, queued=0, dropped=queued)
    return status


def _rate(
    history: deque[tuple[float, int]], status: JobStatus
) -> tuple[float | None, float | None]:
    """Tasks per second over the last minute of samples, and the time left at that pace."""
    if len(history) < 2:
        return None, None
    end = history[-1]
    start = next((s for s in history if end[0] - s[0] <= 60.0), history[0])
    if end[0] <= start[0]:
        return None, None
    rate = (end[1] - start[1]) / (end[0] - start[0])
    left = status.queued + status.running
    return rate, (left / rate if rate > 0 and left else None)
