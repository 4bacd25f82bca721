"""A job's exact counts, from one listing of its results: what the store holds, nothing else.

Each chunk record (``results/<ss>/<chunk>``, the authority) has beside it an empty summary
whose key carries the record's number of failed tasks (see :mod:`.layout`), so one listing
of ``results/`` counts every task without reading a record. A record whose summary is
missing (its writer died between the two writes) is read, one request each.

A task's outcome is the one in its newest record (retry chunks are numbered after the
chunks they resend). Each task of a retry chunk had a failed outcome before it was sent
again (:mod:`.rounds`), so::

    failed = sum(failed of every record) - tasks of every retry chunk that has a record
             - tasks of every retry chunk still pending (they wait for a new outcome)

``dead`` counts the tasks of dead-lettered chunks of the submit that have no record (a
dead retry chunk's tasks keep the failure they had); ``missing`` the tasks with no outcome
yet; ``done`` is the rest. The job is *settled* when its submit and every retry round sent
all their messages and every chunk has a record or is dead: then the counts are final, and
``job.results()`` and ``job.failures()`` say the same.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cheerful.errors import ConfigError, ObjectNotFound

from . import layout
from .queues.base import Queue
from .records import DeadChunk, dead_chunks, read_records
from .rounds import ChunkPlan, read_plan
from .stores.base import Store
from .stores.many import get_many, list_many

__all__ = [
    "REPORT_FRESH_S",
    "REPORT_REFRESH_S",
    "Counts",
    "Listing",
    "WorkerReport",
    "count",
    "is_submitted",
    "list_results",
    "read_reports",
    "settled",
]

REPORT_REFRESH_S = 20.0
"""A worker rewrites its counters of a job with tasks running at least this often."""
REPORT_FRESH_S = 3 * REPORT_REFRESH_S
"""Counters older than this are a worker's that is gone: its running tasks are not counted."""
SHARDED_LIST_KEYS = 20_000
"""A remote job's results with about this many keys (records and their summaries) or more
are listed shard by shard in parallel (one page holds 1,000 keys)."""


@dataclass(frozen=True)
class Listing:
    """What one listing of a job's ``results/`` says: the chunks that have a record and,
    for those whose summary is there, how many of their tasks failed."""

    records: frozenset[int]
    failed: dict[int, int]


def list_results(store: Store, job: str, chunks: int = 0) -> Listing:
    """List the job's results once (keys only). A job of many ``chunks`` on a remote store
    is listed shard by shard, :data:`~.stores.many.IN_FLIGHT` at a time (about a second
    for 100,000 chunks, against some 20 s page after page)."""
    records: set[int] = set()
    failed: dict[int, int] = {}
    root = layout.results_prefix(job)
    if store.remote and 2 * chunks >= SHARDED_LIST_KEYS:
        keys = list_many(store, [f"{root}/{shard:02x}" for shard in range(256)])
    else:
        keys = store.list(root)
    for key in keys:
        try:
            chunk, count = layout.parse_results_key(key)
        except ConfigError:  # not a key of this layout
            continue
        if count is None:
            records.add(chunk)
        else:
            failed[chunk] = count
    return Listing(frozenset(records), failed)


@dataclass(frozen=True)
class Counts:
    """Tasks by outcome; ``settled``: no outcome can change any more (until a retry)."""

    done: int
    failed: int
    dead: int
    missing: int
    settled: bool


def count(
    store: Store,
    plan: ChunkPlan,
    listing: Listing,
    dead: list[DeadChunk],
    *,
    submitted: bool,
) -> Counts:
    """The exact counts of the job of ``plan`` (see the module docstring)."""
    dead_numbers = {d.chunk for d in dead}
    failed = missing = dead_tasks = 0
    pending_retries = 0
    for chunk in plan.numbers():
        tasks = len(plan.expected(chunk) or ())
        retry = plan.is_retry(chunk)
        if chunk in listing.records:
            failed += _failed_of(store, plan, listing, chunk)
            failed -= tasks if retry else 0
        elif chunk in dead_numbers:
            dead_tasks += 0 if retry else tasks
        elif retry:
            failed -= tasks  # sent again: waiting for a new outcome
            missing += tasks
            pending_retries += 1
        else:
            missing += tasks
    failed = max(0, min(failed, plan.tasks - dead_tasks - missing))
    done = plan.tasks - failed - dead_tasks - missing
    rounds_sent = all(r.sent for r in plan.rounds)
    settled = submitted and rounds_sent and missing == 0 and pending_retries == 0
    return Counts(done, failed, dead_tasks, missing, settled)


def _failed_of(store: Store, plan: ChunkPlan, listing: Listing, chunk: int) -> int:
    """How many tasks of ``chunk``'s record failed: from its summary, else from the record."""
    known = listing.failed.get(chunk)
    if known is not None:
        return known
    try:
        for record in read_records(store, plan.job, [chunk], plan):
            return len(record.result.errors)
    except ObjectNotFound:  # pragma: no cover - read_records skips missing records
        pass
    return 0  # deleted meanwhile, or not the job's: no outcome from it


def is_submitted(store: Store, job: str) -> bool:
    """True once every chunk message of the job's submit was sent."""
    return store.exists(layout.submitted(job))


def settled(queue: Queue, store: Store, job: str, manifest: dict) -> bool:
    """True when every task of the job has its final outcome (see the module docstring).

    For workers: the first that finds it so writes ``jobs/<job>/settled`` with the retry
    rounds it saw, and the others read that key and list the rounds (two requests) instead
    of listing every result. A round claimed since makes the mark stale: counted again."""
    rounds = sorted(store.list(layout.rounds_prefix(job)))
    try:
        if json.loads(store.get(layout.settled_mark(job))).get("rounds") == rounds:
            return True
    except ObjectNotFound:
        pass
    except (ValueError, AttributeError):  # a mark cut short or forged: count again
        pass
    if not is_submitted(store, job):
        return False
    plan = read_plan(store, job, manifest)
    dead = dead_chunks(queue, store, job, plan)
    listing = list_results(store, job, plan.end)
    if not count(store, plan, listing, dead, submitted=True).settled:
        return False
    store.put(layout.settled_mark(job), json.dumps({"rounds": rounds}).encode())
    return True


@dataclass(frozen=True)
class WorkerReport:
    """What one worker last wrote about a job (``status/<worker>.json``): estimates."""

    worker: str
    done: int
    failed: int
    running: int
    updated: float

    def fresh(self, now: float) -> bool:
        """True while the worker is alive by its counters' age."""
        return now - self.updated < REPORT_FRESH_S


def read_reports(store: Store, job: str) -> list[WorkerReport]:
    """Every worker's last counters for the job (one listing, one read each)."""
    reports = []
    for key, raw in get_many(store, store.list(layout.status_prefix(job))):
        try:
            worker = layout.worker_of_status_key(key)
            data = json.loads(raw) if raw is not None else None
        except (ConfigError, ValueError):
            continue
        if isinstance(data, dict):
            numbers = {k: _whole(data.get(k)) for k in ("done", "failed", "running")}
            updated = data.get("updated")
            when = float(updated) if isinstance(updated, (int, float)) else 0.0
            reports.append(WorkerReport(worker, **numbers, updated=when))
    return reports


def _whole(value: object) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return value if ok else 0  # type: ignore[return-value]
