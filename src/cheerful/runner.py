"""Run one chunk of tasks: the code every worker uses, local, remote or durable.

Each task runs with its own context (index, seed; see :mod:`cheerful.task`) and its
exception, if any, is captured into an :class:`~cheerful.task.ErrorInfo` so that one
failing task never stops the others. Given a :class:`~cheerful.taskio.Catcher`, what each
task prints, warns and logs is kept with its outcome; run without a seed, the chunk notes
whether its tasks drew random numbers (:mod:`cheerful.rngwatch`). The durable worker's
child processes, which write each task's output to its log, are in
:mod:`cheerful.durable.worker.slots`.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

from .rngwatch import RandomWatch
from .serialize import dumps
from .task import Chunk, ChunkResult, ErrorInfo, enter_task, task_scope
from .taskio import Catcher

__all__ = ["run_chunk"]


def run_chunk(
    fn: Callable,
    chunk: Chunk,
    seed: int | None = None,
    *,
    mark: Callable[[int], Any] | None = None,
    restore_rng: bool = False,
    catcher: Catcher | None = None,
    on_progress: Callable[[float], Any] | None = None,
) -> ChunkResult:
    """Run every task of ``chunk`` with ``fn``; a failing task never stops the others.

    ``mark(index)`` is called before each task (the pool records which task is running,
    so that a crash can be pinned on it); ``catcher`` keeps what each task says;
    ``on_progress(fraction)`` receives what a task reports with ``cf.task_progress``.
    """
    values: list[Any] = []
    errors: dict[int, ErrorInfo] = {}
    watch = RandomWatch() if seed is None else None
    star, seeded = chunk.star, seed is not None
    started = time.perf_counter()
    if catcher is not None:
        catcher.begin()
    try:
        with task_scope(seed, restore_rng=restore_rng, on_progress=on_progress) as ctx:
            # A trivial task costs a few hundred nanoseconds in all: each line counts.
            for index, item in zip(chunk.indices, chunk.items, strict=True):
                if mark is not None:
                    mark(index)
                if seeded:
                    enter_task(ctx, index)
                else:
                    ctx.index, ctx._rng = index, None
                if catcher is not None:
                    if catcher.warned >= 0:
                        catcher.next_task(index)
                    catcher.task = index
                try:
                    values.append(fn(*item) if star else fn(item))
                except BaseException as exc:  # noqa: BLE001 - a task's failure is its outcome
                    if isinstance(exc, KeyboardInterrupt) and _ctrl_c_reaches_here():
                        raise  # Ctrl-C in the caller's process stops the run, not one task
                    values.append(None)
                    errors[index] = ErrorInfo.from_exception(exc, dumps)
            unseeded = watch is not None and (ctx.drew_unseeded or watch.moved())
    finally:
        outputs = catcher.end() if catcher is not None else None
    seconds = time.perf_counter() - started
    return ChunkResult(
        chunk.indices, values, errors, seconds, outputs=outputs or None, unseeded=unseeded
    )


def _ctrl_c_reaches_here() -> bool:
    """True where Ctrl-C raises KeyboardInterrupt: the caller's process, not a worker."""
    return signal.getsignal(signal.SIGINT) is signal.default_int_handler
