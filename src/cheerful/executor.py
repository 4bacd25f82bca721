"""``cf.Executor``: a real :class:`concurrent.futures.Executor` on any plan.

``submit`` queues a call and returns a stock :class:`~concurrent.futures.Future`; a
manager thread packs queued calls into chunks (guided by how many are waiting), runs them
on the plan's pool, and settles each future with ``set_result``/``set_exception``. ``map``
and ``with`` come from the base class. A call whose worker dies fails alone with
:class:`~cheerful.errors.WorkerCrashed`; the calls chunked with it run again.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import math
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError, SerializationError
from .plans.base import Crashed, Done, Plan, Pool, Work, current_levels, owned_cores
from .runner import run_chunk
from .scheduler import crash_result
from .serialize import check_items, dumps, rebuild_exception
from .task import Chunk, Outcome

__all__ = ["Executor"]

_FN_KEY = "cheerful.executor.call"
_live: weakref.WeakSet[Executor] = weakref.WeakSet()


def _call(fn: Callable, args: tuple, kwargs: dict) -> Any:
    """What a worker runs for each submitted call."""
    return fn(*args, **kwargs)


@dataclass
class _Call:
    index: int
    future: futures.Future
    fn: Callable
    args: tuple
    kwargs: dict
    running: bool = False


class Executor(futures.Executor):
    """Run submitted calls on a plan (default: the plan in force, ``cf.processes()``).

    ``seed`` gives the n-th submitted call the same random stream as task n of a
    ``cf.map`` with that seed.
    """

    def __init__(self, plan: Plan | None = None, *, seed: int | None = None) -> None:
        levels = current_levels()
        self._plan = plan if plan is not None else levels[0]
        if not isinstance(self._plan, Plan):
            raise ConfigError(f"plan must be a plan such as cf.processes(), not {plan!r}")
        self._inner = tuple(levels[1:])
        self._seed = seed
        self._lock = threading.Lock()
        self._pending: deque[_Call] = deque()
        self._counter = itertools.count()
        self._shutdown = False
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._fn_bytes = dumps(_call)
        _live.add(self)

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> futures.Future:
        """Schedule ``fn(*args, **kwargs)``; return its future."""
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            call = _Call(next(self._counter), futures.Future(), fn, args, kwargs)
            if not self._plan.in_process:
                self._pending.append(call)
                self._start_manager()
        if self._plan.in_process:
            self._run_inline(call)
        else:
            self._wake()
        return call.future

    def map(
        self,
        fn: Callable,
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[Any]:
        """As :meth:`concurrent.futures.Executor.map`; ``chunksize`` > 1 batches calls."""
        if chunksize < 1:
            raise ConfigError("chunksize must be >= 1")
        if chunksize == 1:
            return super().map(fn, *iterables, timeout=timeout)
        batches = _batched(zip(*iterables, strict=False), chunksize)
        results = super().map(_run_batch, itertools.repeat(fn), batches, timeout=timeout)
        return itertools.chain.from_iterable(results)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking calls; finish (or with ``cancel_futures``, cancel) the queued ones."""
        with self._lock:
            self._shutdown = True
            dropped = list(self._pending) if cancel_futures else []
            if cancel_futures:
                self._pending.clear()
        for call in dropped:
            call.future.cancel()
        self._wake()
        if wait and self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    # --- running calls ------------------------------------------------------------------

    def _run_inline(self, call: _Call) -> None:
        if not call.future.set_running_or_notify_cancel():
            return
        chunk = Chunk(call.index, [(call.fn, call.args, call.kwargs)], True, (call.index,))
        (outcome,) = run_chunk(_call, chunk, self._seed, restore_rng=True).outcomes()
        _settle(call, outcome)

    def _start_manager(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._manage, name="cheerful-executor", daemon=True
            )
            self._thread.start()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _manage(self) -> None:
        pool = self._plan.open(owned_cores())
        inflight: dict[int, list[_Call]] = {}
        try:
            while self._keep_going(inflight):
                self._dispatch(pool, inflight)
                for event in pool.wait(None, wakeup=self._wake_r):
                    self._handle(event, inflight.pop(event.work_id))
                _drain(self._wake_r)
        finally:
            pool.close(kill=bool(inflight))
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _keep_going(self, inflight: dict) -> bool:
        with self._lock:
            return bool(self._pending or inflight or not self._shutdown)

    def _dispatch(self, pool: Pool, inflight: dict) -> None:
        while pool.idle():
            calls = self._take(pool.workers)
            if not calls:
                return
            work = self._work(calls)
            try:
                pool.send(work)
            except SerializationError:
                self._reject_unpicklable(calls)
                continue
            inflight[work.work_id] = calls

    def _take(self, workers: int) -> list[_Call]:
        with self._lock:
            size = max(1, math.ceil(len(self._pending) / (2 * workers)))
            taken = []
            while self._pending and len(taken) < size:
                call = self._pending.popleft()
                if call.running or call.future.set_running_or_notify_cancel():
                    call.running = True
                    taken.append(call)
            return taken

    def _work(self, calls: list[_Call]) -> Work:
        items = [(c.fn, c.args, c.kwargs) for c in calls]
        indices = tuple(c.index for c in calls)
        chunk = Chunk(indices[0], items, True, indices)
        work_id = next(_work_ids)
        return Work(work_id, _FN_KEY, self._fn_bytes, chunk, self._seed, self._inner, _call)

    def _reject_unpicklable(self, calls: list[_Call]) -> None:
        good = []
        for call in calls:
            try:
                check_items([(call.fn, call.args, call.kwargs)])
                good.append(call)
            except SerializationError as exc:
                call.future.set_exception(
                    SerializationError(f"call {call.index} cannot be sent to a worker: {exc}")
                )
        with self._lock:
            self._pending.extendleft(reversed(good))

    def _handle(self, event: Done | Crashed, calls: list[_Call]) -> None:
        by_index = {c.index: c for c in calls}
        if isinstance(event, Done):
            for outcome in event.result.outcomes():
                _settle(by_index[outcome.index], outcome)
            return
        culprit = by_index.get(event.index) if event.index is not None else None
        if culprit is not None:
            (outcome,) = crash_result(culprit.index, event).outcomes()
            _settle(culprit, outcome)
        again = [c for c in calls if c is not culprit]
        with self._lock:
            self._pending.extendleft(reversed(again))


_work_ids = itertools.count()


def _settle(call: _Call, outcome: Outcome) -> None:
    if outcome.ok:
        call.future.set_result(outcome.value)
    else:
        call.future.set_exception(rebuild_exception(outcome.error, call.index))


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except (BlockingIOError, OSError):
        pass


def _batched(iterable: Iterable[Any], size: int) -> Iterator[tuple]:
    it = iter(iterable)
    while batch := tuple(itertools.islice(it, size)):
        yield batch


def _run_batch(fn: Callable, batch: tuple) -> list[Any]:
    return [fn(*args) for args in batch]


@atexit.register
def _shutdown_all() -> None:
    # Like ProcessPoolExecutor at exit: queued calls are cancelled, running ones finish,
    # and no worker process is left behind.
    for executor in list(_live):
        executor.shutdown(wait=True, cancel_futures=True)
