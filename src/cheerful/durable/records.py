"""Read what a durable job's store and dead letters say about each task.

The store layout (:mod:`.layout`) is the protocol between the workers, who write chunk
records (``results/<chunk>``) and logs, and whoever reads them: :class:`~.job.Job` builds a
:class:`JobView` (every task's state, value, error, attempts and log key) from the records
in ascending chunk order, so a retry's newer record wins, and from the dead letters of
chunks that have no record.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cheerful.errors import ConfigError, JobError, JobFailed, WorkerCrashed
from cheerful.serialize import loads, rebuild_exception
from cheerful.task import ErrorInfo

from . import layout
from .backends import Backend
from .messages import ChunkMessage, ChunkRecord, MalformedMessage
from .queues.base import Queue
from .rounds import ChunkPlan
from .stores.base import Store
from .stores.many import get_many

__all__ = [
    "DEAD_LETTERS_READ",
    "DeadChunk",
    "InputReader",
    "JobView",
    "TaskFailure",
    "dead_chunks",
    "dead_text",
    "job_failed",
    "read_records",
    "record_keys",
    "read_view",
]

DEAD_LETTERS_READ = 1_000_000
"""At most this many dead letters are read to find a job's dead chunks."""
MISSING, OK, FAILED = 0, 1, 2
"""A task's state in :attr:`JobView.state`: no outcome yet, succeeded, failed."""


@dataclass(frozen=True)
class TaskFailure:
    """A failed or dead task: its exception's type name, message and remote traceback,
    the attempts it took and the store key of its last log (``""`` if none; the text is
    ``job.logs(index)``)."""

    index: int
    type_name: str
    message: str
    traceback: str
    attempts: int
    log: str


@dataclass(frozen=True)
class DeadChunk:
    """A dead letter of a job: its chunk, its message id, its tasks and why it died."""

    chunk: int
    message_id: str
    indices: tuple[int, ...]
    reason: str
    receives: int


@dataclass
class JobView:
    """What the store and the queue say about every task of a job (one full read)."""

    values: list[Any]
    state: bytearray
    errors: dict[int, ErrorInfo] = field(default_factory=dict)
    attempts: dict[int, int] = field(default_factory=dict)
    logs: dict[int, str] = field(default_factory=dict)
    dead: dict[int, DeadChunk] = field(default_factory=dict)
    cancelled: bool = False
    seconds: dict[int, float | None] = field(default_factory=dict)
    workers: dict[int, str] = field(default_factory=dict)

    def apply(self, record: ChunkRecord) -> None:
        """Take ``record``'s outcomes (over older ones)."""
        result = record.result
        for index, value in zip(result.indices, result.values, strict=True):
            error = result.errors.get(index) if result.errors else None
            self.state[index] = OK if error is None else FAILED
            self.values[index] = value
            if error is not None:
                self.errors[index] = error
            self.attempts[index] = record.attempts.get(index, 1)
            self.logs[index] = record.logs.get(index, "")
            self.seconds[index] = (record.seconds or {}).get(index)
            self.workers[index] = record.worker

    def failed(self) -> list[int]:
        """Indices of the failed and the dead tasks, in order."""
        return [i for i, s in enumerate(self.state) if s == FAILED or i in self.dead]

    def pending(self) -> list[int]:
        """Indices of the tasks with no outcome yet."""
        return [i for i, s in enumerate(self.state) if s == MISSING and i not in self.dead]

    def failure(self, index: int) -> TaskFailure:
        """The :class:`TaskFailure` of a failed or dead task."""
        if index in self.dead:
            dead = self.dead[index]
            return TaskFailure(index, "WorkerCrashed", dead_text(dead), "", dead.receives, "")
        err = self.errors[index]
        attempts, log = self.attempts.get(index, 1), self.logs.get(index, "")
        return TaskFailure(index, err.type_name, err.message, err.traceback, attempts, log)

    def exception(self, index: int) -> BaseException:
        """The own exception of a failed task (a WorkerCrashed for a dead one)."""
        if index in self.dead:
            return WorkerCrashed(dead_text(self.dead[index]), index=index)
        return rebuild_exception(self.errors[index], index)


def dead_text(dead: DeadChunk) -> str:
    """Why a dead chunk's tasks failed, in words."""
    return f"its chunk {dead.chunk} was dead-lettered after {dead.receives} receives: {dead.reason}"


class InputReader:
    """The stored input of any task, reading each original chunk's inputs once."""

    def __init__(self, store: Store, job_id: str, size: int) -> None:
        self.store, self.job_id, self.size = store, job_id, size
        self.cache: dict[int, list] = {}

    def items(self, indices: Sequence[int]) -> list[Any]:
        """The inputs of tasks ``indices``, in that order."""
        return [self.item(index) for index in indices]

    def item(self, index: int) -> Any:
        """The input of task ``index``."""
        chunk, offset = divmod(index, self.size)
        if chunk not in self.cache:
            self.cache[chunk] = loads(self.store.get(layout.input(self.job_id, chunk)))
        return self.cache[chunk][offset]


def job_failed(job_id: str, total: int, view: JobView, failed: list[int]) -> JobFailed:
    """The :class:`~cheerful.errors.JobFailed` that ``job.results()`` raises: the first few
    failures listed, the first task's own exception as its cause."""
    failures = [view.failure(index) for index in failed]
    lines = [f"  task {f.index}: {f.type_name}: {f.message}" for f in failures[:5]]
    if len(failures) > 5:
        lines.append(f"  ... and {len(failures) - 5} more")
    lines.append("see job.failures(), job.logs(index), job.retry_failed()")
    err = JobFailed(
        f"job {job_id}: {len(failures)} of {total} tasks failed:\n" + "\n".join(lines), failures
    )
    err.__cause__ = view.exception(failed[0])
    return err


def record_keys(store: Store, job_id: str) -> list[str]:
    """The keys of the job's stored records, in chunk order (summaries left out)."""
    keys = []
    for key in store.list(layout.results_prefix(job_id)):
        try:
            if layout.parse_results_key(key)[1] is None:
                keys.append(key)
        except ConfigError:  # not a key of this layout: nobody's record
            continue
    return layout.by_number(keys)


def read_records(
    store: Store, job_id: str, chunks: Iterable[int] | None = None, plan: ChunkPlan | None = None
) -> Iterator[ChunkRecord]:
    """The stored records of ``chunks`` (every stored one by default, in chunk order);
    with a ``plan``, only those whose chunk and tasks are the job's."""
    if chunks is None:
        keys: Iterable[str] = record_keys(store, job_id)
    else:
        keys = [layout.result(job_id, chunk) for chunk in chunks]
    for key, data in get_many(store, keys):
        if data is None:
            continue
        try:
            record = loads(data)
        except Exception as exc:
            raise JobError(f"job {job_id}: {key} cannot be read here: {exc!r}") from exc
        if plan is None or _fits(record, plan, layout.parse_results_key(key)[0]):
            yield record


def _fits(record: Any, plan: ChunkPlan, chunk: int) -> bool:
    """True if ``record`` is the record of ``chunk`` in ``plan``: its own chunk, its tasks."""
    return (
        isinstance(record, ChunkRecord)
        and record.chunk == chunk
        and record.job == plan.job
        and plan.matches(chunk, tuple(record.result.indices))
    )


def dead_chunks(queue: Queue, store: Store, job_id: str, plan: ChunkPlan) -> list[DeadChunk]:
    """The job's dead-lettered chunks that have no stored result (a dead letter whose chunk
    or tasks are not the job's is not counted: it never held any of the job's tasks)."""
    found = []
    seen: set[int] = set()
    for letter in queue.dead_letters(DEAD_LETTERS_READ, group=job_id):
        try:
            message = ChunkMessage.decode(letter.body)
        except MalformedMessage:  # not a chunk message: not ours to judge
            continue
        if message.job != job_id or not plan.matches(message.chunk, message.indices):
            continue
        if message.chunk in seen:  # sent twice and dead twice: one chunk
            continue
        seen.add(message.chunk)
        if not store.exists(layout.result(job_id, message.chunk)):
            found.append(
                DeadChunk(
                    message.chunk, letter.id, message.indices, letter.reason, letter.receive_count
                )
            )
    return found


def read_view(backend: Backend, job_id: str, plan: ChunkPlan) -> JobView:
    """Every task's outcome, from every record and dead letter of the job (one full read)."""
    view = JobView([None] * plan.tasks, bytearray(plan.tasks))
    for record in read_records(backend.store, job_id, plan=plan):  # ascending: newest wins
        view.apply(record)
    for dead in dead_chunks(backend.queue, backend.store, job_id, plan):
        view.dead.update((i, dead) for i in dead.indices if view.state[i] == MISSING)
    view.cancelled = backend.store.exists(layout.cancelled(job_id))
    return view
