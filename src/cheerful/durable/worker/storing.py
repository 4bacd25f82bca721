"""What a worker writes for a finished chunk, and what it does when the store keeps failing.

For each finished chunk, in this order: the chunk's inline inputs if a task failed (so a
retry can send them again), the record (``results/<chunk>``, first write wins), then its
summary (the empty key that carries the record's failed count, see
:mod:`cheerful.durable.layout`). A worker that finds the record written by another (a
duplicate delivery, or the redelivery of a chunk whose worker died between the record and
the delete) reads it and writes the summary too, so one that died between the two writes
leaves no gap for long.

:class:`StoreTrouble` follows store failures: the first one of a streak is reported in
full, then one line a minute; writes are tried again with a growing pause; a streak longer
than the worker's ``store_timeout`` makes the worker leave (exit reason "store failing",
a non-zero exit code), releasing what it holds so that healthy workers run it.
"""

from __future__ import annotations

import pickle
import sys
import time
from collections.abc import Callable

from cheerful.errors import BackendError, ObjectNotFound
from cheerful.serialize import dumps, loads

from .. import layout
from ..messages import ChunkRecord
from ..stores.base import Store
from .events import Record

__all__ = ["STORE_FAILING", "ChunkWriter", "StoreTrouble", "warn"]

STORE_FAILING = "store failing"
"""The exit reason of a worker whose store failed for longer than its ``store_timeout``."""
FIRST_RETRY_S = 1.0
"""Pause before a failed record is written again; it doubles up to :data:`LAST_RETRY_S`."""
LAST_RETRY_S = 30.0
REPORT_EVERY_S = 60.0
"""While the store keeps failing, one line this often says so."""


def warn(message: str) -> None:
    """Print a worker's warning on its standard error."""
    print(f"cheerful worker: {message}", file=sys.stderr, flush=True)


class StoreTrouble:
    """A streak of store failures: when it began, what to say, when to give up."""

    def __init__(self, timeout: float | None, say: Callable[[str], None] = warn) -> None:
        self.timeout, self.say = timeout, say
        self.since: float | None = None
        self.reported = 0.0
        self.failures = 0

    def failed(self, now: float, doing: str, exc: BaseException) -> None:
        """A write failed while ``doing`` something."""
        self.failures += 1
        if self.since is None:
            self.since, self.reported = now, now
            limit = f"; leaving after {self.timeout:g} s of this" if self.timeout else ""
            self.say(f"the store failed ({doing}): {exc}; trying again{limit}")
        elif now - self.reported >= REPORT_EVERY_S:
            self.reported = now
            self.say(
                f"the store is still failing after {now - self.since:.0f} s "
                f"({self.failures} failed writes; the last: {exc})"
            )

    def ok(self) -> None:
        """A write went through: the streak is over."""
        if self.since is not None:
            self.say(f"the store works again after {self.failures} failed write(s)")
        self.since, self.failures = None, 0

    @property
    def failing(self) -> bool:
        """True during a streak of failures."""
        return self.since is not None

    def given_up(self, now: float) -> bool:
        """True once the streak has lasted longer than the timeout."""
        return (
            self.since is not None
            and self.timeout is not None
            and (now - self.since >= self.timeout)
        )


class ChunkWriter:
    """Stores finished chunks for one worker; keeps those the store refused, to try again."""

    def __init__(self, store: Store, worker: str, trouble: StoreTrouble) -> None:
        self.store, self.worker, self.trouble = store, worker, trouble
        self.waiting: list[tuple[float, float, Record]] = []  # (due, pause, record)

    def write(self, record: Record, pause: float = FIRST_RETRY_S) -> bool | None:
        """Store ``record``: True if this call wrote it, False if another had (a
        duplicate), None if the store failed (it is kept and tried again by :meth:`due`)."""
        now = time.monotonic()
        try:
            wrote = self._write(record)
        except BackendError as exc:
            self.trouble.failed(now, f"storing the result of chunk {record.chunk}", exc)
            self.waiting.append((now + pause, min(LAST_RETRY_S, pause * 2), record))
            return None
        self.trouble.ok()
        return wrote

    def due(self, now: float) -> list[tuple[Record, float]]:
        """The kept records whose pause is over, with the pause to use if they fail again."""
        ready = [(r, p) for at, p, r in self.waiting if at <= now]
        self.waiting = [w for w in self.waiting if w[0] > now]
        return ready

    def _write(self, record: Record) -> bool:
        job, chunk, result = record.job.id, record.chunk, record.result
        if result.errors and record.inputs:
            self.store.put(layout.input(job, chunk), record.inputs)
        full = ChunkRecord(
            job,
            chunk,
            result,
            record.attempts,
            record.logs,
            self.worker,
            time.time(),
            record.seconds,
        )
        wrote = self.store.put_if_absent(layout.result(job, chunk), _pack(full))
        if wrote:
            self.store.put(layout.summary(job, chunk, len(result.errors)), b"")
        else:
            self.summarize(job, chunk)
        return wrote

    def summarize(self, job: str, chunk: int) -> None:
        """Write the summary of a record another worker stored (it may have died before)."""
        try:
            stored = loads(self.store.get(layout.result(job, chunk)))
        except ObjectNotFound:
            return
        except BackendError:
            raise
        except Exception as exc:  # noqa: BLE001 - a record this worker cannot read
            warn(f"the stored result of chunk {chunk} of job {job} cannot be read: {exc!r}")
            return
        if isinstance(stored, ChunkRecord) and stored.chunk == chunk:
            self.store.put(layout.summary(job, chunk, len(stored.result.errors)), b"")


def _pack(record: ChunkRecord) -> bytes:
    try:
        return pickle.dumps(record, protocol=5)
    except Exception:  # values that only cloudpickle can write
        return dumps(record)
