"""Run one chunk of tasks: the code every worker uses, local, remote or durable.

Each task runs with its own context (index, seed; see :mod:`cheerful.task`) and its
exception, if any, is captured into an :class:`~cheerful.task.ErrorInfo` so that one
failing task never stops the others. The durable worker's child processes, which also
capture each task's output, are in :mod:`cheerful.durable.worker.slots`.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

from .serialize import dumps
from .task import Chunk, ChunkResult, ErrorInfo, enter_task, task_scope

__all__ = ["run_chunk"]


def run_chunk(
    fn: Callable,
    chunk: Chunk,
    seed: int | None = None,
    *,
    mark: Callable[[int], Any] | None = None,
    restore_rng: bool = False,
) -> ChunkResult:
    """Run every task of ``chunk`` with ``fn``; a failing task never stops the others.

    ``mark(index)`` is called before each task (the pool records which task is running,
    so that a crash can be pinned on it).
    """
    values: list[Any] = []
    errors: dict[int, ErrorInfo] = {}
    started = time.perf_counter()
    with task_scope(seed, restore_rng=restore_rng) as ctx:
        for index, item in zip(chunk.indices, chunk.items, strict=True):
            if mark is not None:
                mark(index)
            enter_task(ctx, index)
            try:
                values.append(fn(*item) if chunk.star else fn(item))
            except BaseException as exc:  # noqa: BLE001 - a task's failure is its outcome
                if isinstance(exc, KeyboardInterrupt) and _ctrl_c_reaches_here():
                    raise  # Ctrl-C in the caller's process stops the run, not one task
                values.append(None)
                errors[index] = ErrorInfo.from_exception(exc, dumps)
    return ChunkResult(chunk.indices, values, errors, time.perf_counter() - started)


def _ctrl_c_reaches_here() -> bool:
    """True where Ctrl-C raises KeyboardInterrupt: the caller's process, not a worker."""
    return signal.getsignal(signal.SIGINT) is signal.default_int_handler
