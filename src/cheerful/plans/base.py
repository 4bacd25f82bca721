"""The driven-execution protocol: a :class:`Plan` opens a :class:`Pool` that runs chunks.

A plan is a small frozen value (``processes(4)``, later ``ssh(hosts)``); opening it starts
workers. A pool runs one chunk per idle worker and reports :class:`Done` or
:class:`Crashed` events; chunk sizing, ordering, retries after crashes and progress live
above it, in :mod:`cheerful.scheduler`, the same for every plan.

The *plan stack* holds the levels of a nested topology: ``cf.plan(outer, inner)`` runs
tasks on ``outer`` and a ``cf.map`` called inside one of those tasks on ``inner``.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..task import Chunk, ChunkResult

__all__ = [
    "MAX_START_CRASHES",
    "Crashed",
    "Done",
    "Plan",
    "Pool",
    "Work",
    "current_levels",
    "owned_cores",
    "plan",
]

MAX_START_CRASHES = 3
"""Times a chunk's worker may die before its first task (``Crashed.index`` None) before
the chunk's first task is blamed; every consumer of :class:`Crashed` uses it."""


@dataclass(frozen=True)
class Work:
    """One chunk to run: the function (by key, with its bytes), seed and inner plan levels."""

    work_id: int
    fn_key: str
    fn_bytes: bytes
    chunk: Chunk
    seed: int | None = None
    levels: tuple[Plan, ...] = ()
    fn: Any = None  # the function itself, for plans that run in the caller's process


@dataclass(frozen=True)
class Done:
    """A chunk finished: its values and errors."""

    work_id: int
    result: ChunkResult


@dataclass(frozen=True)
class Crashed:
    """The worker running a chunk died while running task ``index``.

    ``index`` is None when the worker died before starting any task of the chunk.
    ``reason`` is a readable cause, e.g. "killed by signal SIGSEGV".
    """

    work_id: int
    index: int | None
    reason: str
    exitcode: int | None = None
    signal: str | None = None


class Pool(ABC):
    """Running workers of a plan. Used by one scheduler at a time."""

    workers: int
    broken: bool = False
    """True once the pool can run nothing more (every SSH host lost): it is not kept."""

    @abstractmethod
    def idle(self) -> int:
        """How many workers can take a chunk now."""

    @abstractmethod
    def send(self, work: Work) -> None:
        """Give ``work`` to an idle worker (call only when :meth:`idle` > 0)."""

    @abstractmethod
    def wait(self, timeout: float | None = None, wakeup: int | None = None) -> list[Done | Crashed]:
        """Events for chunks that ended, waiting up to ``timeout`` seconds for one.

        ``wakeup`` is a file descriptor that also ends the wait when readable (the
        executor's manager uses it to notice new submissions).
        """

    @abstractmethod
    def close(self, *, kill: bool = False) -> None:
        """Stop every worker; ``kill`` does not wait for running chunks."""

    def abandon(self) -> None:
        """Stop the chunks in flight at once (after an error); the pool stays usable."""
        self.close(kill=True)


class Plan(ABC):
    """How to run tasks: a small frozen value; :meth:`open` starts its workers."""

    @abstractmethod
    def open(self, cores: int) -> Pool:
        """Start the workers, given the number of ``cores`` this level may use."""

    @property
    def in_process(self) -> bool:
        """True when tasks run in the caller's own process (no serialization)."""
        return False

    def cores_per_worker(self, cores: int) -> int:
        """Cores each worker of this plan owns, given the cores of the level."""
        return 1


# --- the plan stack ---------------------------------------------------------------------

_lock = threading.RLock()
_levels: tuple[Plan, ...] | None = None  # None: nothing set, use the default


def _default_levels() -> tuple[Plan, ...]:
    if os.environ.get("CHEERFUL_IN_WORKER"):
        from .sequential import sequential

        return (sequential(),)
    from .processes import processes

    return (processes(),)


def current_levels() -> tuple[Plan, ...]:
    """The plan levels in force: the one ``cf.plan`` set, or the default."""
    levels = _levels
    return levels if levels else _default_levels()


def set_worker_levels(levels: Sequence[Plan]) -> None:
    """In a worker: the levels below the one running this task (nested maps use them)."""
    global _levels
    from .sequential import sequential

    _levels = tuple(levels) or (sequential(),)


def owned_cores() -> int:
    """Cores this process may use: what the outer level gave it, else the machine's."""
    given = os.environ.get("CHEERFUL_CORES")
    if given and given.isdigit() and int(given) > 0:
        return int(given)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class plan:  # noqa: N801 - used like R's plan(): a function call that is also a `with`
    """Set the plan levels: for the rest of the program, or for a ``with`` block.

    ``cf.plan(cf.processes(4))`` sets it from now on; ``with cf.plan(p): ...`` sets it
    for the block and puts the previous one back afterwards. Several plans make a nested
    topology: ``cf.plan(outer, inner)``. ``cf.plan()`` with no argument returns the
    levels in force (as a tuple) without changing anything, via :attr:`levels`.
    """

    def __init__(self, *plans: Plan) -> None:
        global _levels
        for p in plans:
            if not isinstance(p, Plan):
                raise ConfigError(
                    f"cf.plan() takes plans such as cf.processes() or cf.sequential(), not {p!r}"
                )
        with _lock:
            self._previous = _levels
            if plans:
                _levels = tuple(plans)
        self.levels: tuple[Plan, ...] = current_levels()

    def __enter__(self) -> plan:
        return self

    def __exit__(self, *exc: Any) -> None:
        global _levels
        with _lock:
            _levels = self._previous
        from ..scheduler import release_pools

        release_pools(keep=current_levels())

    def __repr__(self) -> str:
        return f"plan({', '.join(map(repr, self.levels))})"
