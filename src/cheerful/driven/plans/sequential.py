"""The sequential plan: tasks run one after another in the caller's own process.

Nothing is serialized, so a debugger, ``breakpoint()`` and print statements work as in a
plain loop; seeds give the same results as any other plan, and the caller's random state
is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cheerful.levels import set_levels
from cheerful.pool import Done, Pool, Work
from cheerful.runner import run_chunk
from cheerful.taskio import Catcher, live_default

from .base import Plan

__all__ = ["SequentialPlan", "sequential"]


class SequentialPlan(Plan):
    """Run tasks in the calling process, in order. Made by :func:`sequential`."""

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:  # a plan keys its kept pool
        return hash(type(self))

    @property
    def in_process(self) -> bool:
        return True

    def open(self, cores: int) -> Pool:
        return _InlinePool()

    def cores_per_worker(self, cores: int) -> int:
        return cores

    def capacity(self, cores: int) -> int:
        return 1

    def __repr__(self) -> str:
        return "sequential()"


def sequential() -> SequentialPlan:
    """A plan that runs every task in the caller's process, one at a time."""
    return SequentialPlan()


class _InlinePool(Pool):
    """Runs a chunk at once, in the caller's thread, when it is sent."""

    workers = 1

    def __init__(self) -> None:
        self._done: list[Done] = []
        self._tick: Callable[[float], Any] | None = None

    def hear_progress(self, tick: Callable[[float], Any] | None) -> None:
        self._tick = tick

    def idle(self) -> int:
        return 0 if self._done else 1

    def send(self, work: Work) -> None:
        saved = set_levels(work.levels)
        catcher = None if live_default() else Catcher(tee=True).install(streams_only=True)
        try:  # what tasks print goes out live (a debugger works) and is kept for Failure
            result = run_chunk(
                work.fn,
                work.chunk,
                work.seed,
                restore_rng=True,
                catcher=catcher,
                on_progress=self._tick,
            )
        finally:
            set_levels(saved)
            if catcher is not None:
                catcher.uninstall()
        self._done.append(Done(work.work_id, result))

    def wait(self, timeout: float | None = None, wakeup: int | None = None) -> list[Done]:
        done, self._done = self._done, []
        return done

    def close(self, *, kill: bool = False) -> None:
        self._done = []
