"""Run one chunk of tasks: the code every worker uses, local, remote or durable.

Each task runs inside :func:`cheerful.task.running_task` (index, seed) and its exception,
if any, is captured into an :class:`~cheerful.task.ErrorInfo` so that one failing task
never stops the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .serialize import dumps
from .task import Chunk, ErrorInfo, Outcome, running_task

__all__ = ["run_chunk"]


def run_chunk(
    fn: Callable,
    chunk: Chunk,
    seed: int | None = None,
    *,
    mark: Callable[[int], Any] | None = None,
    restore_rng: bool = False,
) -> list[Outcome]:
    """Run every task of ``chunk`` with ``fn``; return one outcome per task, in order.

    ``mark(index)`` is called before each task (the pool records which task is running,
    so that a crash can be pinned on it).
    """
    outcomes = []
    for index, item in zip(chunk.indices, chunk.items, strict=True):
        if mark is not None:
            mark(index)
        outcomes.append(_run_one(fn, item, chunk.star, index, seed, restore_rng))
    return outcomes


def _run_one(
    fn: Callable, item: Any, star: bool, index: int, seed: int | None, restore_rng: bool
) -> Outcome:
    started = time.perf_counter()
    with running_task(index, seed, restore_rng=restore_rng):
        try:
            value = fn(*item) if star else fn(item)
        except BaseException as exc:  # noqa: BLE001 - a task's failure is its outcome
            error = ErrorInfo.from_exception(exc, dumps)
            return Outcome(index, False, None, error, time.perf_counter() - started)
    return Outcome(index, True, value, None, time.perf_counter() - started)
