"""Drive a plan's pool: cut tasks into chunks, dispatch, collect, survive worker crashes.

The same loop serves every plan (sequential, processes, later ssh): plans only start
workers and move chunks; this module decides what runs where and when. Pools are kept
between calls (imports stay warm) and closed at exit or when their plan is left.
"""

from __future__ import annotations

import atexit
import itertools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from cheerful.pool import MAX_START_CRASHES, Crashed, Done, Pool, Work, owned_cores
from cheerful.serialize import check_function, check_items
from cheerful.task import Chunk, ChunkResult, ErrorInfo

from .chunking import Chunker
from .plans.base import Plan

__all__ = ["TICK_S", "crash_result", "open_pool", "release_pools", "run_chunks"]

TICK_S = 0.25
"""Seconds between two looks at running tasks' progress while a progress bar is shown."""

_ids = itertools.count()
_pools_lock = threading.Lock()
_idle_pools: dict[Plan, Pool] = {}


@contextmanager
def open_pool(plan: Plan) -> Iterator[Pool]:
    """A running pool for ``plan``: a kept one when free, else a new one (kept after)."""
    with _pools_lock:
        pool = _idle_pools.pop(plan, None)
    if pool is None:
        pool = plan.open(owned_cores())
    try:
        yield pool
    except BaseException:
        pool.abandon()  # stop what is in flight; the pool itself stays usable
        raise
    finally:
        _keep(plan, pool)


def _keep(plan: Plan, pool: Pool) -> None:
    if pool.broken:  # the next map opens a new one (and reconnects)
        pool.close(kill=True)
        return
    with _pools_lock:
        spare = plan in _idle_pools
        if not spare:
            _idle_pools[plan] = pool
    if spare:
        pool.close()


def release_pools(keep: Sequence[Plan] = ()) -> None:
    """Close kept pools whose plan is not in ``keep``."""
    with _pools_lock:
        gone = [p for p in _idle_pools if p not in keep]
        pools = [_idle_pools.pop(p) for p in gone]
    for pool in pools:
        pool.close()


def _forget_pools_in_child() -> None:
    # A forked worker must not use (or close) its parent's workers.
    global _pools_lock
    _idle_pools.clear()
    _pools_lock = threading.Lock()


atexit.register(release_pools)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools_in_child)


def run_chunks(
    fn: Callable,
    items: Sequence[Any] | Iterator[Any],
    *,
    plan: Plan,
    inner: Sequence[Plan] = (),
    star: bool = False,
    chunk_size: int | None = None,
    seed: int | None = None,
    tick: Callable[[float], Any] | None = None,
) -> Iterator[ChunkResult]:
    """Run ``fn`` over ``items`` on ``plan``; yield each chunk's result as it completes.

    ``tick(share)``, if given, hears a few times a second how much of the tasks running
    now is done (what they report with ``cf.task_progress``).

    Validation happens before anything runs: an unpicklable function or input raises
    :class:`~cheerful.errors.SerializationError` at once. An iterator is read only as
    chunks need its items (a chunk per worker in flight, and those whose results are being
    handed back), each chunk checked as it is read; its items are dropped once their chunk
    is done.
    """
    if isinstance(items, Sequence) and not items:
        return _no_chunks()
    fn_bytes = b"" if plan.in_process else check_function(fn)
    if not isinstance(items, Sequence):
        source: _Listed | _Streamed = _Streamed(items, check=not plan.in_process)
        item_bytes = 0.0
    else:
        source = _Listed(items)
        item_bytes = 0.0 if plan.in_process else check_items(items) / len(items)
    spec = _Spec(fn, fn_bytes, os.urandom(16).hex(), source, star, seed, tuple(inner))
    return _drive(plan, spec, chunk_size, item_bytes, tick)


def _no_chunks() -> Iterator[ChunkResult]:
    """An empty generator: like every result of :func:`run_chunks`, it can be closed."""
    yield from ()


class _Listed:
    """Inputs given as a list: every one known, validated before anything runs."""

    def __init__(self, items: Sequence[Any]) -> None:
        self.items, self.total = items, len(items)

    def get(self, start: int, stop: int, chunker: Chunker) -> Sequence[Any]:
        return self.items[start:stop]

    def release(self, start: int, stop: int) -> None:
        pass


class _Streamed:
    """Inputs read from an iterator as chunks need them, kept until their chunk is done.

    Each range is read whole (``islice``, no call per item) when it is first asked for;
    a range asked again (after a crash) lies inside one read before.
    """

    total = None

    def __init__(self, iterator: Iterator[Any], check: bool) -> None:
        self._iterator, self._check = iterator, check
        self._held: dict[int, list[Any]] = {}  # start of a range read -> its items
        self._left: dict[int, int] = {}  # start of a range read -> its tasks not yet done
        self._read = 0

    def get(self, start: int, stop: int, chunker: Chunker) -> list[Any]:
        if start < self._read:  # run again: part of a range read before
            base = self._range_of(start)
            return self._held[base][start - base : stop - base]
        fresh = list(itertools.islice(self._iterator, stop - start))
        if len(fresh) < stop - start:
            chunker.end_at(start + len(fresh))
        if fresh:
            if self._check:  # an input that cannot travel fails here, named
                chunker.item_bytes = check_items(fresh, first_index=start) / len(fresh)
            self._held[start], self._left[start] = fresh, len(fresh)
        self._read = start + len(fresh)
        return fresh

    def release(self, start: int, stop: int) -> None:
        base = self._range_of(start)
        self._left[base] -= stop - start
        if self._left[base] <= 0:
            del self._held[base], self._left[base]

    def _range_of(self, index: int) -> int:
        for base, items in self._held.items():  # a few ranges: about two per worker
            if base <= index < base + len(items):
                return base
        raise AssertionError(f"task {index} is in no range read and not yet done")


class _Spec:
    """What one map runs: the function and its inputs."""

    def __init__(self, fn, fn_bytes, fn_key, source, star, seed, inner) -> None:
        self.fn, self.fn_bytes, self.fn_key = fn, fn_bytes, fn_key
        self.source, self.star, self.seed, self.inner = source, star, seed, inner

    def work(self, start: int, stop: int, chunker: Chunker, one_go: bool) -> Work | None:
        """The chunk of tasks ``[start, stop)``, or None when the inputs ended before;
        ``one_go``: it may run without marking each task (see :mod:`cheerful.runner`)."""
        items = self.source.get(start, stop, chunker)
        if not items:
            return None
        chunk = Chunk(start, items, self.star)
        fn, seed, inner = self.fn, self.seed, self.inner
        return Work(next(_ids), self.fn_key, self.fn_bytes, chunk, seed, inner, fn, one_go)


def _drive(plan: Plan, spec: _Spec, chunk_size: int | None, item_bytes: float, tick=None):
    timeout = None if tick is None else TICK_S
    with open_pool(plan) as pool:
        pool.hear_progress(tick)
        chunker = Chunker(spec.source.total, pool.workers, chunk_size, item_bytes)
        inflight: dict[int, tuple[int, int]] = {}
        starts: dict[tuple[int, int], int] = {}
        try:
            while chunker.has_more() or inflight:
                _dispatch(pool, spec, chunker, inflight)
                events = pool.wait(timeout)
                if chunker.timed and not any(isinstance(e, Crashed) for e in events):
                    _dispatch(pool, spec, chunker, inflight)  # work first, then unpack results
                for event in events:
                    span = inflight.pop(event.work_id)
                    yield from _settle(event, span, chunker, starts, spec.source)
                if tick is not None:
                    tick(pool.running_fraction())
        finally:
            pool.hear_progress(None)
            if inflight:  # stopped early (error raised, caller gave up): drop in-flight work
                pool.abandon()


def _dispatch(pool: Pool, spec: _Spec, chunker: Chunker, inflight: dict) -> None:
    while pool.idle() and chunker.has_more():
        start, stop, again = chunker.take()
        work = spec.work(start, stop, chunker, not again)  # again: after a crash, task by task
        if work is None:
            continue
        inflight[work.work_id] = (start, start + len(work.chunk))
        pool.send(work)


def _settle(event: Done | Crashed, span: tuple[int, int], chunker: Chunker, starts, source):
    start, stop = span
    if isinstance(event, Done):
        if event.result.unloadable and stop - start > 1:
            for index in range(*span):  # find the one input that cannot travel
                chunker.again(index, index + 1)
            return []
        chunker.observe(len(event.result), event.result.seconds)
        source.release(start, stop)
        return [event.result]
    if event.index is None:  # died before its first task (try the chunk again, a few
        # times) or somewhere in a run in one go (run it again task by task)
        starts[span] = starts.get(span, 0) + (0 if event.in_one_go else 1)
        if starts[span] < MAX_START_CRASHES:
            chunker.again(start, stop)
            return []
        source.release(start, stop)
        return [crash_result(i, event) for i in range(start, stop)]
    chunker.again(start, event.index)
    chunker.again(event.index + 1, stop)
    source.release(event.index, event.index + 1)
    return [crash_result(event.index, event)]


def crash_result(index: int, event: Crashed) -> ChunkResult:
    """The result of a task whose worker died under it: a :class:`WorkerCrashed`."""
    message = f"task {index} crashed: {event.reason}"
    crash = {"exitcode": event.exitcode, "signal": event.signal}
    error = ErrorInfo("cheerful.errors.WorkerCrashed", message, message + "\n", b"", crash)
    return ChunkResult((index,), [None], {index: error})
