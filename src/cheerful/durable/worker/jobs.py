"""What a worker keeps about the jobs it serves: their specs, chunk plans and code, read
once each, and its own progress counters per job, written to
``jobs/<job>/status/<worker>.json``.

The counters are rewritten at most every :data:`STATUS_EVERY_S` (a replaced file costs a
data flush on most file systems, a request on S3), before the message of the chunk that made
them due is deleted, at least every :data:`STATUS_REFRESH_S` while the worker serves the
job (their ``updated`` time tells readers the worker is alive), and once more when the
worker leaves. They are estimates: the records under ``results/`` are the truth.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Callable

from cheerful.errors import ConfigError, ObjectNotFound
from cheerful.task import ChunkResult

from .. import layout
from ..counts import REPORT_REFRESH_S
from ..rounds import ChunkPlan, read_plan
from .events import JobSpec

__all__ = [
    "CANCEL_CHECK_S",
    "STATUS_EVERY_S",
    "STATUS_REFRESH_S",
    "Counters",
    "JobCache",
    "job_spec",
]

CANCEL_CHECK_S = 2.0
"""How long a job's "not cancelled" answer is trusted before the store is asked again."""
STATUS_EVERY_S = 0.5
"""Shortest time between two writes of a job's counters."""
REMOTE_STATUS_EVERY_S = 5.0
"""The same on a store where every write is a paid request (S3): at most 720 a worker-hour."""
STATUS_REFRESH_S = REPORT_REFRESH_S
"""Longest time between two writes of a job's counters while tasks of it run here: a reader
takes counters older than :data:`~cheerful.durable.counts.REPORT_FRESH_S` for a gone
worker's."""
JOBS_CACHED = 32
_NAMES = ("chunks", "done", "failed")


class JobCache:
    """Manifests, chunk plans and code of the jobs seen lately, read once each."""

    def __init__(self, store) -> None:
        self.store = store
        self.known: OrderedDict[str, tuple[JobSpec, bytes]] = OrderedDict()
        self.manifests: dict[str, dict] = {}
        self.plans: dict[str, ChunkPlan] = {}
        self.codes: dict[str, bytes] = {}
        self.checked_until: dict[str, float] = {}
        self.not_cancelled_until: dict[str, float] = {}

    def spec(self, job: str, now: float) -> tuple[JobSpec | None, str]:
        """The job's spec, or None and why not (a job deleted meanwhile is noticed within
        :data:`CANCEL_CHECK_S`)."""
        if job in self.known:
            if now < self.checked_until.get(job, 0.0):
                self.known.move_to_end(job)
                return self.known[job][0], ""
            if self.store.exists(layout.manifest(job)):
                self.checked_until[job] = now + CANCEL_CHECK_S
                return self.known[job][0], ""
            del self.known[job]
            return None, "it was deleted (no manifest)"
        try:
            manifest = json.loads(self.store.get(layout.manifest(job)))
            code = self.store.get(layout.code(job))
            spec = job_spec(job, layout.readable_manifest(job, manifest))
        except (ObjectNotFound, ConfigError) as exc:  # gone, or stored by another layout
            return None, f"{exc}"
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return None, f"its manifest cannot be read: {exc!r}"
        self.known[job] = (spec, code)
        self.manifests[job] = manifest
        self.checked_until[job] = now + CANCEL_CHECK_S
        while len(self.known) > JOBS_CACHED:
            gone, _ = self.known.popitem(last=False)
            for cache in (self.checked_until, self.manifests, self.plans):
                cache.pop(gone, None)
        return spec, ""

    def code(self, job: str, key: str | None = None) -> bytes:
        """The pickled function of a job :meth:`spec` found, or the code stored at ``key``
        (a retry's fixed code)."""
        if key is None or key == layout.code(job):
            return self.known[job][1]
        if key not in self.codes:
            if not key.startswith(layout.rounds_prefix(job) + "/"):
                raise ConfigError(f"code key {key!r} is not one of job {job}'s")
            if len(self.codes) >= JOBS_CACHED:
                self.codes.clear()
            self.codes[key] = self.store.get(key)
        return self.codes[key]

    def plan(self, job: str, chunk: int) -> ChunkPlan:
        """The chunk plan of a job :meth:`spec` found. Its retry rounds are read (one
        listing) only when a chunk beyond the plan known comes: a chunk of its submit needs
        none of them."""
        plan = self.plans.get(job)
        if plan is None or chunk >= plan.end:
            manifest = self.manifests[job]
            if chunk < int(manifest["chunks"]):
                plan = ChunkPlan(
                    job,
                    int(manifest["tasks"]),
                    int(manifest["chunk_size"]),
                    int(manifest["chunks"]),
                )
            else:
                plan = read_plan(self.store, job, manifest)
            self.plans[job] = plan
        return plan

    def cancelled(self, job: str, now: float) -> bool:
        """Whether ``jobs/<job>/cancelled`` exists (a "no" is trusted for a while)."""
        if now < self.not_cancelled_until.get(job, 0.0):
            return False
        if self.store.exists(layout.cancelled(job)):
            return True
        self.not_cancelled_until[job] = now + CANCEL_CHECK_S
        return False


def job_spec(job: str, manifest: dict) -> JobSpec:
    """The decisions' view of a manifest (``tasks``, ``seed``, ``retries``, ``timeout``)."""
    timeout, seed = manifest.get("timeout"), manifest.get("seed")
    return JobSpec(
        job,
        int(manifest["tasks"]),
        None if seed is None else int(seed),
        int(manifest.get("retries") or 0),
        None if timeout is None else float(timeout),
        bool(manifest.get("star", False)),
    )


class Counters:
    """Tasks done and failed and chunks recorded by this worker, per job."""

    def __init__(self, store, worker: str, every: float | None = None) -> None:
        if every is None:
            every = REMOTE_STATUS_EVERY_S if store.remote else STATUS_EVERY_S
        self.store, self.worker, self.every = store, worker, every
        self.jobs: dict[str, dict[str, int]] = {}
        self.written: dict[str, tuple[dict[str, int], int]] = {}
        self.written_at: dict[str, float] = {}
        self.due = 0.0

    def touch(self, job: str) -> None:
        """Start counting ``job`` (its counters are written with the next flush)."""
        self._of(job)

    def add(self, job: str, result: ChunkResult, wrote: bool) -> None:
        """Count a chunk's record (``wrote``: this worker stored it, not a duplicate)."""
        counts = self._of(job)
        if wrote:
            failed = len(result.errors)
            counts["chunks"] += 1
            counts["done"] += len(result) - failed
            counts["failed"] += failed

    def flush(self, now: float, running: Callable[[str], int], *, force: bool = False) -> None:
        """Write the counters that changed, if the last write is old enough (or ``force``);
        those of a job with tasks running are written again every :data:`STATUS_REFRESH_S`
        even if unchanged (readers trust a running count only while it is fresh)."""
        if now < self.due and not force:
            return
        self.due = now + self.every
        for job, counts in self.jobs.items():
            state = (dict(counts), running(job))
            stale = state[1] > 0 and now - self.written_at.get(job, 0.0) >= STATUS_REFRESH_S
            if force or stale or self.written.get(job) != state:
                self._write(job, *state)
                self.written[job] = state
                self.written_at[job] = now

    def totals(self) -> dict[str, int]:
        """The counts summed over every job."""
        return {n: sum(c[n] for c in self.jobs.values()) for n in _NAMES}

    def _of(self, job: str) -> dict[str, int]:
        if job not in self.jobs:  # a restarted worker with the same id goes on counting
            self.jobs[job] = dict.fromkeys(_NAMES, 0)
            try:
                old = json.loads(self.store.get(layout.status(job, self.worker)))
                self.jobs[job].update({k: int(old.get(k, 0)) for k in _NAMES})
            except (ObjectNotFound, ValueError, TypeError, AttributeError):
                pass
        return self.jobs[job]

    def _write(self, job: str, counts: dict[str, int], running: int) -> None:
        status = {
            **counts,
            "running": running,
            "updated": time.time(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        self.store.put(layout.status(job, self.worker), json.dumps(status).encode())
