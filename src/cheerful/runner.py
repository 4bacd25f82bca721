"""Run one chunk of tasks: the code every worker uses, local, remote or durable.

Each task runs with its own context (index, seed; see :mod:`cheerful.task`) and its
exception, if any, is captured into an :class:`~cheerful.task.ErrorInfo` so that one
failing task never stops the others. Given a :class:`~cheerful.taskio.Catcher`, what each
task prints, warns and logs is kept with its outcome; run without a seed, the chunk notes
whether its tasks drew random numbers (:mod:`cheerful.rngwatch`).

Asked to (``one_go``), a chunk runs in one go, at the speed of ``list(map(fn, items))``:
no task is marked as it starts. The first time anything asks which task is running (it
prints, warns, logs, reports progress, reads its context) the run finds it (the length
of the values so far) and the rest of the chunk runs task by task. A worker that dies in
such a run names no task: its chunk is run again task by task. The durable worker's
child processes, which write each task's output to its log, are in
:mod:`cheerful.durable.worker.slots`.
"""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

from .rngwatch import RandomWatch
from .serialize import dumps
from .task import Chunk, ChunkResult, ErrorInfo, TaskContext, enter_task, task_scope
from .taskio import Catcher

__all__ = ["ONE_GO", "run_chunk"]

ONE_GO = -2
"""What ``mark`` is given while a chunk runs in one go: no task is known to be running."""

_IN_ONE_GO = (list, tuple, range)  # inputs whose iterators can be stopped (__setstate__)


def run_chunk(
    fn: Callable,
    chunk: Chunk,
    seed: int | None = None,
    *,
    mark: Callable[[int], Any] | None = None,
    restore_rng: bool = False,
    catcher: Catcher | None = None,
    on_progress: Callable[[float], Any] | None = None,
    one_go: bool = False,
) -> ChunkResult:
    """Run every task of ``chunk`` with ``fn``; a failing task never stops the others.

    ``mark(index)`` is called before each task (the pool records which task is running,
    so that a crash can be pinned on it); ``catcher`` keeps what each task says;
    ``on_progress(fraction)`` receives what a task reports with ``cf.task_progress``.
    ``one_go`` runs an unseeded chunk in one go where it can (see the module docstring):
    ``mark(ONE_GO)`` once, then a task index only if a task asks where it is.
    """
    values: list[Any] = []
    errors: dict[int, ErrorInfo] = {}
    watch = RandomWatch() if seed is None else None
    run: _OneGo | None = None
    if one_go and seed is None and len(chunk) > 1 and type(chunk.items) in _IN_ONE_GO:
        run = _OneGo(chunk, values, mark, catcher, on_progress)
    if catcher is not None:
        catcher.begin()
    try:
        context = run.context if run is not None else None
        with task_scope(seed, restore_rng=restore_rng, on_progress=on_progress, context=context) as ctx:
            started = time.perf_counter()  # the tasks' time alone: it sizes the next chunks
            if run is not None:
                run.run(fn, chunk.star, errors)
            _task_by_task(fn, chunk, len(values), seed, ctx, values, errors, mark, catcher)
            seconds = time.perf_counter() - started
            unseeded = watch is not None and (ctx.drew_unseeded or watch.moved())
    finally:
        outputs = catcher.end() if catcher is not None else None
    return ChunkResult(
        chunk.indices, values, errors, seconds, outputs=outputs or None, unseeded=unseeded
    )


def _task_by_task(fn, chunk: Chunk, done: int, seed, ctx, values, errors, mark, catcher) -> None:
    """Run the tasks of ``chunk`` from position ``done`` on, marking each as it starts."""
    star, seeded = chunk.star, seed is not None
    indices, items = chunk.indices, chunk.items
    if done:
        indices, items = indices[done:], items[done:]
    # A trivial task costs a few hundred nanoseconds in all: each line counts.
    for index, item in zip(indices, items, strict=True):
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
            errors[index] = _failure(exc)
            values.append(None)


def _failure(exc: BaseException) -> ErrorInfo:
    """A task's exception as its outcome; Ctrl-C in the caller's process is re-raised
    instead (it stops the run, not one task)."""
    if isinstance(exc, KeyboardInterrupt) and _ctrl_c_reaches_here():
        raise exc
    return ErrorInfo.from_exception(exc, dumps)


class _OneGo:
    """A chunk run in one go: ``values.extend(map(fn, items))``, no call per task.

    While it runs, the task running is the one at position ``len(values)`` (the list grows
    as each task returns); :meth:`locate` finds it, marks it, and stops the run after it.
    """

    def __init__(self, chunk: Chunk, values: list, mark, catcher, on_progress) -> None:
        self.indices: Sequence[int] = chunk.indices
        self.items = chunk.items
        self.values, self.mark, self.catcher = values, mark, catcher
        self.iterator = iter(chunk.items)
        self.on = False
        report = None
        if on_progress is not None:

            def report(share: float) -> None:
                self.locate()
                on_progress(share)

        self.context = _LocatingContext(-1, None, on_progress=report)
        self.context.one_go = self

    def run(self, fn: Callable, star: bool, errors: dict) -> None:
        """Run tasks until they are all done or one asked where it is."""
        apply = itertools.starmap if star else map
        values, self.on = self.values, True
        if self.mark is not None:
            self.mark(ONE_GO)
        if self.catcher is not None:
            self.catcher.locate = self.locate
        try:
            while self.on:
                try:
                    values.extend(apply(fn, self.iterator))
                    break
                except BaseException as exc:  # noqa: BLE001 - a task's failure is its outcome
                    errors[self.indices[len(values)]] = _failure(exc)
                    values.append(None)
        finally:
            self.on = False
            if self.catcher is not None:
                self.catcher.locate = None

    def locate(self) -> int:
        """The index of the task running now; the run stops once it returns (the rest of
        the chunk runs task by task)."""
        if self.on:
            self.on = False
            self.iterator.__setstate__(len(self.items))  # map() stops after this task
            position = min(len(self.values), len(self.items) - 1)  # a task's thread, late
            index = self.indices[position]
            if self.mark is not None:
                self.mark(index)
            self.context.index, self.context._rng = index, None
            if self.catcher is not None:
                self.catcher.locate = None
                self.catcher.task = index
        return self.context.index


class _LocatingContext(TaskContext):
    """The context of a chunk run in one go: asked for its index (or rng), it locates the
    running task first."""

    one_go: _OneGo | None = None

    @property  # type: ignore[override]
    def index(self) -> int:
        one_go = self.one_go
        if one_go is not None and one_go.on:
            one_go.locate()
        return self.__dict__["index"]

    @index.setter
    def index(self, value: int) -> None:
        self.__dict__["index"] = value

    def rng(self) -> Any:
        """As :meth:`TaskContext.rng`, for the task located first."""
        self.index  # noqa: B018 - locates the running task
        return super().rng()


def _ctrl_c_reaches_here() -> bool:
    """True where Ctrl-C raises KeyboardInterrupt: the caller's process, not a worker."""
    return signal.getsignal(signal.SIGINT) is signal.default_int_handler
