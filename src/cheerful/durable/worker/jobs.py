"""What a worker keeps about the jobs it serves: their specs and code, read once each, and
its own progress counters per job, written to ``jobs/<job>/status/<worker>.json``.

The counters are rewritten at most every :data:`STATUS_EVERY_S` (a replaced file costs a
data flush on most file systems, a request on S3), before the message of the chunk that made
them due is deleted, and once more when the worker leaves. A worker killed in between
under-counts by what it did since its last write; the records under ``results/`` are the
truth (``Job.wait`` confirms from them).
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
from .events import JobSpec

__all__ = ["CANCEL_CHECK_S", "STATUS_EVERY_S", "Counters", "JobCache", "job_spec"]

CANCEL_CHECK_S = 2.0
"""How long a job's "not cancelled" answer is trusted before the store is asked again."""
STATUS_EVERY_S = 0.5
REMOTE_STATUS_EVERY_S = 5.0
"""The same on a store where every write is a paid request (S3): at most 720 a worker-hour."""
"""Shortest time between two writes of a job's counters."""
JOBS_CACHED = 32
_NAMES = ("chunks", "done", "failed")


class JobCache:
    """Manifests and code of the jobs seen lately, read once each."""

    def __init__(self, store) -> None:
        self.store = store
        self.known: OrderedDict[str, tuple[JobSpec, bytes]] = OrderedDict()
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
        self.checked_until[job] = now + CANCEL_CHECK_S
        while len(self.known) > JOBS_CACHED:
            gone, _ = self.known.popitem(last=False)
            self.checked_until.pop(gone, None)
        return spec, ""

    def code(self, job: str) -> bytes:
        """The pickled function of a job :meth:`spec` found."""
        return self.known[job][1]

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
        self.due = 0.0

    def add(self, job: str, result: ChunkResult, wrote: bool) -> None:
        """Count a chunk's record (``wrote``: this worker stored it, not a duplicate)."""
        counts = self._of(job)
        if wrote:
            failed = len(result.errors)
            counts["chunks"] += 1
            counts["done"] += len(result) - failed
            counts["failed"] += failed

    def flush(self, now: float, running: Callable[[str], int], *, force: bool = False) -> None:
        """Write the counters that changed, if the last write is old enough (or ``force``)."""
        if now < self.due and not force:
            return
        self.due = now + self.every
        for job, counts in self.jobs.items():
            state = (dict(counts), running(job))
            if force or self.written.get(job) != state:
                self._write(job, *state)
                self.written[job] = state

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
