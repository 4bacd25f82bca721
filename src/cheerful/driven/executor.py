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

from cheerful.errors import BrokenPlan, ConfigError, SerializationError
from cheerful.pool import MAX_START_CRASHES, Crashed, Done, Pool, Work, owned_cores
from cheerful.runner import run_chunk
from cheerful.serialize import check_items, dumps, rebuild_exception
from cheerful.task import Chunk, Outcome

from .plans.base import Plan
from .plans.stack import current_levels
from .scheduler import crash_result

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
    start_crashes: int = 0  # times its worker died before running any task of its chunk
    alone: bool = False  # to be sent in a chunk of its own


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
        if seed is not None and (not isinstance(seed, int) or seed < 0):
            raise ConfigError(f"seed must be a non-negative whole number, not {seed!r}")
        self._inner = tuple(levels[1:])
        self._seed = seed
        self._lock = threading.Lock()
        self._pending: deque[_Call] = deque()
        self._counter = itertools.count()
        self._shutdown = False
        self._broken: Exception | None = None  # why the plan can run nothing more
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe()  # -1 once closed (fd numbers get reused)
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)  # a full pipe already means "wake up"
        self._fn_bytes = dumps(_call)
        _live.add(self)

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> futures.Future:
        """Schedule ``fn(*args, **kwargs)``; return its future."""
        with self._lock:
            if self._broken is not None:
                raise BrokenPlan(f"the executor's plan is broken: {self._broken}")
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
        if self._thread is None:  # no manager will ever close the wake-up pipe
            self._close_wakeup()
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
        with self._lock, contextlib.suppress(OSError):
            if self._wake_w >= 0:
                os.write(self._wake_w, b"x")

    def _close_wakeup(self) -> None:
        with self._lock:
            fds, self._wake_r, self._wake_w = (self._wake_r, self._wake_w), -1, -1
        for fd in fds:
            if fd >= 0:
                os.close(fd)

    def _manage(self) -> None:
        inflight: dict[int, list[_Call]] = {}
        try:
            pool = self._plan.open(owned_cores())
        except Exception as exc:  # e.g. an SSH host cannot be reached: no call can run
            self._break(exc, inflight)
            self._close_wakeup()
            return
        try:
            while True:
                self._dispatch(pool, inflight)  # may drop cancelled calls: check after it
                if not self._keep_going(inflight):
                    break
                for event in pool.wait(None, wakeup=self._wake_r):
                    self._handle(event, inflight.pop(event.work_id))
                _drain(self._wake_r)
        except BrokenPlan as exc:  # e.g. every SSH host is lost
            self._break(exc, inflight)
        finally:
            pool.close(kill=bool(inflight))
            self._close_wakeup()

    def _break(self, exc: Exception, inflight: dict) -> None:
        """The plan cannot run calls: every queued and running one fails with ``exc``."""
        with self._lock:
            self._broken = exc
            calls = [c for calls in inflight.values() for c in calls] + list(self._pending)
            self._pending.clear()
            inflight.clear()
        for call in calls:
            if not call.future.done() and (
                call.running or call.future.set_running_or_notify_cancel()
            ):
                call.future.set_exception(exc)

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
            taken: list[_Call] = []
            while self._pending and len(taken) < size:
                if taken and self._pending[0].alone:
                    break
                call = self._pending.popleft()
                if call.running or call.future.set_running_or_notify_cancel():
                    call.running = True
                    taken.append(call)
                    if call.alone:
                        break
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
        if isinstance(event, Done) and event.result.unloadable and len(calls) > 1:
            for call in calls:  # one of them cannot travel: send each alone to find it
                call.alone = True
            with self._lock:
                self._pending.extendleft(reversed(calls))
            return
        if isinstance(event, Done):
            for outcome in event.result.outcomes():
                _settle(by_index[outcome.index], outcome)
            return
        culprits = [by_index[event.index]] if event.index in by_index else []
        if event.index is None:  # died before its first task: try again, a few times
            for call in calls:
                call.start_crashes += 1
            culprits = [c for c in calls if c.start_crashes >= MAX_START_CRASHES]
        for culprit in culprits:
            (outcome,) = crash_result(culprit.index, event).outcomes()
            _settle(culprit, outcome)
        gone = {c.index for c in culprits}
        again = [c for c in calls if c.index not in gone]
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
