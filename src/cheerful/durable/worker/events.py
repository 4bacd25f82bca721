"""The values the worker's state machine takes and gives: its configuration, what a job
and a received message look like to it, and the actions it asks the I/O loop to carry out.
Plain frozen dataclasses: easy to build in tests, to compare and to log.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cheerful.task import ChunkResult

from ..messages import ChunkMessage

__all__ = [
    "Action",
    "CheckIdle",
    "Config",
    "DeadLetter",
    "Delete",
    "Delivery",
    "Exit",
    "Extend",
    "JobSpec",
    "Kill",
    "Record",
    "Release",
    "Run",
    "WorkerSummary",
]


@dataclass(frozen=True)
class Config:
    """How a worker behaves; times in seconds."""

    slots: int
    visibility: float = 30.0
    grace: float = 30.0
    idle_exit: float | None = None
    job: str | None = None
    prefetch: int = 0
    store_timeout: float | None = 300.0
    """Leave when the store has failed for this long (None: never)."""
    stop_at: float | None = None
    """When to stop taking work and leave (the fleet's budget), on the clock of ``now``."""
    jitter: float = 1.0
    """This worker's factor (0.5 to 1.5) on the waits between its settle checks, so that
    many workers do not ask at the same instant."""

    @property
    def heartbeat(self) -> float:
        """Seconds between two extends of the held messages."""
        return self.visibility / 3


@dataclass(frozen=True)
class JobSpec:
    """What the decisions need from a job's manifest."""

    id: str
    tasks: int
    seed: int | None = None
    retries: int = 0
    timeout: float | None = None
    star: bool = False


@dataclass(frozen=True)
class Delivery:
    """A received message with the facts the loop looked up for it.

    ``message`` is None when the body did not decode or is not one of its job's chunks
    (``problem`` says why); ``job`` is None when the job has no manifest (``problem`` may
    say more). ``recorded``: the chunk's result is already stored. ``inputs``: the chunk's
    pickled inputs (inline or read from the spill key). A retry's chunk carries the attempt
    number each task starts at (``first_attempts``; else every task starts at 1) and, when
    the retry replaced the job's code, the store key of the code to run (``code``).
    """

    receipt: str
    message: ChunkMessage | None
    job: JobSpec | None = None
    problem: str = ""
    cancelled: bool = False
    recorded: bool = False
    inputs: bytes = b""
    first_attempts: tuple[int, ...] | None = None
    code: str | None = None


# --- actions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """Run tasks ``indices`` of a held chunk on a free slot; ``attempts`` numbers each
    task's try (1 = first)."""

    work_id: int
    receipt: str
    job: JobSpec
    message: ChunkMessage
    inputs: bytes
    indices: tuple[int, ...]
    attempts: tuple[int, ...]
    code: str | None = None


@dataclass(frozen=True)
class Extend:
    """Keep held messages invisible for ``seconds`` more (a heartbeat)."""

    receipts: tuple[str, ...]
    seconds: float


@dataclass(frozen=True)
class Release:
    """Make messages visible again at once: not started, or not finished in time."""

    receipts: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class Delete:
    """Delete messages that need no run (job cancelled, result already stored)."""

    receipts: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class DeadLetter:
    """Move a message to the dead letters with ``reason``."""

    receipt: str
    reason: str


@dataclass(frozen=True)
class Kill:
    """Kill the slot running ``work_id`` (its task overran the timeout, or time is up).
    ``leaving``: the run being given up as the worker leaves (its output so far is kept
    as the running task's log); None for a timeout."""

    work_id: int
    reason: str
    leaving: Run | None = None


@dataclass(frozen=True)
class Record:
    """A chunk is finished: store its record (first write wins), count it, delete the
    message; then tell the state :meth:`WorkerState.settled`."""

    receipt: str
    job: JobSpec
    chunk: int
    result: ChunkResult
    attempts: dict[int, int]
    logs: dict[int, str]
    inputs: bytes = b""
    """The chunk's pickled inputs when they came inline in the message (else b""): stored
    at ``inputs/<chunk>`` if a task failed, so that ``retry_failed`` can send it again."""
    seconds: dict[int, float] = field(default_factory=dict)
    """How long each task's last attempt ran."""


@dataclass(frozen=True)
class CheckIdle:
    """The worker has had nothing to do for its idle time: before it leaves, the loop asks
    the queue whether messages of the jobs it serves are still out (held by workers that
    may die, so they may come back), and tells :meth:`WorkerState.idle_checked`."""


@dataclass(frozen=True)
class Exit:
    """Leave: nothing is held any more. ``reason`` is "idle", "job settled", "stopped",
    "grace expired", "spot interruption", "rebalance", "budget" or "store failing"."""

    reason: str


Action = Run | Extend | Release | Delete | DeadLetter | Kill | Record | CheckIdle | Exit


@dataclass(frozen=True)
class WorkerSummary:
    """What a worker did before it left: ``reason`` is as :class:`Exit`'s."""

    worker: str
    reason: str
    chunks: int = 0
    done: int = 0
    failed: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    released: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        return (
            f"worker {self.worker} stopped ({self.reason}) after {self.seconds:.1f} s: "
            f"{self.chunks} chunk(s), {self.done} task(s) done, {self.failed} failed, "
            f"{self.duplicates} duplicate(s) dropped, {self.dead_lettered} dead-lettered, "
            f"{self.released} released"
        )
