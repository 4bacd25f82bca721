"""The pool protocol: workers that run chunks, and the events they report.

A :class:`Pool` runs one chunk (a :class:`Work`) per idle worker and reports
:class:`Done` or :class:`Crashed`. The driven side opens pools from plans (see
:mod:`cheerful.driven.plans`) and drives them with its scheduler; the durable worker runs
its slots as a pool too (:mod:`cheerful.durable.worker.slots`). Both ways to run share
these values, so they live beside the task model.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from .record import Record
from .task import Chunk, ChunkResult

__all__ = ["MAX_START_CRASHES", "Crashed", "Done", "Pool", "Work", "owned_cores"]

MAX_START_CRASHES = 3
"""Times a chunk's worker may die before its first task (``Crashed.index`` None) before
the chunk's first task is blamed; every consumer of :class:`Crashed` uses it."""


class Work(Record):
    """One chunk to run: the function (by key, with its bytes), seed and inner plan
    levels (the plans below the running level, for a nested cf.map); ``fn``: the function
    itself, for plans that run in the caller's process; ``one_go``: it may run in one go,
    no task marked (see :mod:`cheerful.runner`)."""

    FIELDS = ("work_id", "fn_key", "fn_bytes", "chunk", "seed", "levels", "fn", "one_go")
    work_id: int
    fn_key: str
    fn_bytes: bytes
    chunk: Chunk
    seed: int | None
    levels: tuple[Any, ...]
    fn: Any
    one_go: bool

    def __init__(
        self,
        work_id: int,
        fn_key: str,
        fn_bytes: bytes,
        chunk: Chunk,
        seed: int | None = None,
        levels: tuple[Any, ...] = (),
        fn: Any = None,
        one_go: bool = False,
    ) -> None:
        self._set(
            work_id=work_id,
            fn_key=fn_key,
            fn_bytes=fn_bytes,
            chunk=chunk,
            seed=seed,
            levels=levels,
            fn=fn,
            one_go=one_go,
        )


class Done(Record):
    """A chunk finished: its values and errors (``result``).

    A pool may hand over the result still packed, with the function that unpacks it
    (``unpack``): it is unpacked when first read, so that the scheduler can give the
    worker its next chunk first.
    """

    FIELDS = ("work_id", "result")
    work_id: int

    def __init__(
        self,
        work_id: int,
        result: ChunkResult | None = None,
        unpack: Callable[[], ChunkResult] | None = None,
    ) -> None:
        self._set(work_id=work_id, _result=result, _unpack=unpack)

    @property
    def result(self) -> ChunkResult:
        """The chunk's result (unpacked now, if it came packed)."""
        unpack = self.__dict__["_unpack"]
        if unpack is not None:
            self._set(_result=unpack(), _unpack=None)
        return self.__dict__["_result"]


class Crashed(Record):
    """The worker running a chunk died while running task ``index``.

    ``index`` is None when the worker died before starting any task of the chunk, or
    while it ran the chunk in one go (``in_one_go``: the task is not known; the chunk runs
    again task by task). ``reason`` is a readable cause, e.g. "killed by signal SIGSEGV".
    """

    FIELDS = ("work_id", "index", "reason", "exitcode", "signal", "in_one_go")
    work_id: int
    index: int | None
    reason: str
    exitcode: int | None
    signal: str | None
    in_one_go: bool

    def __init__(
        self,
        work_id: int,
        index: int | None,
        reason: str,
        exitcode: int | None = None,
        signal: str | None = None,
        in_one_go: bool = False,
    ) -> None:
        self._set(
            work_id=work_id,
            index=index,
            reason=reason,
            exitcode=exitcode,
            signal=signal,
            in_one_go=in_one_go,
        )


class Pool(ABC):
    """Running workers. Used by one scheduler at a time."""

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

    def running_fraction(self) -> float:
        """How much of the tasks running now is done, summed over them (what tasks said
        with ``cf.task_progress``); 0.0 where a pool cannot tell."""
        return 0.0

    def hear_progress(self, tick: Callable[[float], Any] | None) -> None:  # noqa: B027
        """A pool that runs tasks in the caller's thread calls ``tick(share)`` itself as
        they report progress (the others are asked by :meth:`running_fraction`)."""

    def ready_for_threads(self) -> None:  # noqa: B027 - a hook: nothing to do by default
        """The caller is about to use this pool from threads of its own (an executor's
        manager): a pool that forks processes makes ready now, while a fork is safe (see
        :mod:`cheerful.zygote`). Nothing by default."""


def owned_cores() -> int:
    """Cores this process may use: what the outer level gave it, else the machine's."""
    given = os.environ.get("CHEERFUL_CORES")
    if given and given.isdigit() and int(given) > 0:
        return int(given)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
