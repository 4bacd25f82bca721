"""``cf.Executor``: a real :class:`concurrent.futures.Executor` on any plan.

``submit`` queues a call and returns a stock :class:`~concurrent.futures.Future`. The first
submit opens the plan's pool in the caller's own thread, before the executor has a thread
of its own (so local workers are forked while that is safe, see :mod:`cheerful.zygote`);
then a manager thread packs queued calls into chunks (guided by how many are waiting),
runs them on the pool and settles each future with ``set_result``/``set_exception``.
``map`` and ``with`` come from the base class; CPython's own executor tests run against it
(``tests/cpython``). What a call printed, warned and logged in its worker is said again in
the caller when its result is first asked for (``result()`` or ``exception()``, as R's
future relays it with ``value()``), so ``Executor.map`` relays it in input order.

Faults fail the call they hit, as ``ProcessPoolExecutor`` reports them, and the executor
goes on: a call whose worker dies fails alone with :class:`~cheerful.errors.WorkerCrashed`
(a ``BrokenProcessPool``; the calls chunked with it run again); a call or result that
cannot be pickled fails with :class:`~cheerful.errors.SerializationError` (a
``PicklingError``), one that cannot be unpickled on the other side with
:class:`~cheerful.errors.RebuildFailed` (a ``BrokenProcessPool``). Only a failing
``initializer`` or a plan that can run nothing more (every SSH host lost) breaks the
executor: every call not finished fails with :class:`~cheerful.errors.BrokenPlan` and
``submit`` raises it.

Submitted work is never dropped: after ``shutdown(wait=False)``, when the executor is
garbage collected, and at the end of the interpreter, queued and running calls finish
before the workers stop (as ``ProcessPoolExecutor`` does at exit).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import math
import os
import threading
import time
import traceback
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

from cheerful.errors import BrokenPlan, ConfigError, SerializationError
from cheerful.pool import MAX_START_CRASHES, Crashed, Done, Pool, Work, owned_cores
from cheerful.runner import run_chunk
from cheerful.serialize import check_function, check_items, rebuild_exception
from cheerful.task import Chunk, Outcome

from .futures import TaskFuture, say_unheard
from .plans.base import Plan
from .plans.stack import current_levels
from .scheduler import crash_result

__all__ = ["Executor"]

_LOG = logging.getLogger("concurrent.futures")  # where the standard executors log, too
_running: set[_Manager] = set()  # managers whose thread runs: waited for at exit
_running_lock = threading.Lock()
_exiting = False


class _InitializerFailed(Exception):
    """The executor's initializer raised in a worker; the argument is its traceback."""


class _Caller:
    """What a worker runs for each call: the executor's initializer first, once per process."""

    def __init__(self, initializer: Callable | None, initargs: tuple) -> None:
        self.initializer, self.initargs = initializer, initargs
        self.failure: str | None = None

    def __call__(self, fn: Callable, args: tuple, kwargs: dict) -> Any:
        if self.initializer is not None:
            initializer, self.initializer = self.initializer, None
            try:
                initializer(*self.initargs)
            except BaseException:  # noqa: BLE001 - breaks the executor, in the caller
                self.failure = traceback.format_exc()
        if self.failure is not None:
            raise _InitializerFailed(self.failure)
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
    ``cf.map`` with that seed. ``initializer(*initargs)`` runs once in each worker process
    before its first call (in the caller, for ``cf.sequential()``); if it raises, the
    executor is broken, as a ``ProcessPoolExecutor`` is.
    """

    def __init__(
        self,
        plan: Plan | None = None,
        *,
        seed: int | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
    ) -> None:
        levels = current_levels()
        chosen = plan if plan is not None else levels[0]
        if not isinstance(chosen, Plan):
            raise ConfigError(f"plan must be a plan such as cf.processes(), not {plan!r}")
        if seed is not None and (not isinstance(seed, int) or seed < 0):
            raise ConfigError(f"seed must be a non-negative whole number, not {seed!r}")
        if initializer is not None and not callable(initializer):
            raise ConfigError(f"initializer must be a function, not {initializer!r}")
        caller = _Caller(initializer, tuple(initargs))
        self._manager = _Manager(chosen, tuple(levels[1:]), seed, caller)
        # dropped without shutdown: the manager finishes the work, then stops the workers
        weakref.finalize(self, self._manager.shutdown, False, False).atexit = False

    @property
    def _broken(self) -> Exception | None:
        """Why the executor can run nothing more (as ``ProcessPoolExecutor._broken``)."""
        return self._manager.broken

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> futures.Future:
        """Schedule ``fn(*args, **kwargs)``; return its future."""
        return self._manager.submit(fn, args, kwargs)

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
        self._manager.shutdown(wait, cancel_futures)


class _Manager:
    """The executor's state and its thread. It holds no reference to the
    :class:`Executor`, so that an executor dropped without shutdown is collected."""

    def __init__(self, plan: Plan, inner: tuple, seed: int | None, caller: _Caller) -> None:
        self.plan, self.inner, self.seed, self.caller = plan, inner, seed, caller
        self.fn_key = f"cheerful.executor.{uuid.uuid4().hex}"
        self.fn_bytes = b"" if plan.in_process else check_function(caller)
        self.lock = threading.Lock()
        self.start_lock = threading.Lock()  # held while the pool opens
        self.pending: deque[_Call] = deque()
        self.counter = itertools.count()
        self.unheard: list[list] = []  # what calls said, held until asked or shut down
        self.closing = False
        self.cancel_rest = False  # shutdown(cancel_futures) asked the thread to cancel
        self.broken: Exception | None = None  # why the plan can run nothing more
        self.thread: threading.Thread | None = None
        self.wake_r, self.wake_w = os.pipe()  # -1 once closed (fd numbers get reused)
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)  # a full pipe already means "wake up"

    def submit(self, fn: Callable, args: tuple, kwargs: dict) -> futures.Future:
        with self.lock:
            if self.broken is not None:
                raise BrokenPlan(f"the executor's plan is broken: {self.broken}")
            if self.closing or _exiting:
                after = "interpreter shutdown" if _exiting and not self.closing else "shutdown"
                raise RuntimeError(f"cannot schedule new futures after {after}")
            call = _Call(next(self.counter), TaskFuture(), fn, args, kwargs)
            if not self.plan.in_process:
                self.pending.append(call)
        if self.plan.in_process:
            self._run_inline(call)
        elif self.thread is None:
            self._start()
        self._wake()
        return call.future

    def shutdown(self, wait: bool, cancel_futures: bool) -> None:
        with self.lock:
            self.closing = True
            dropped: list[_Call] = []
            if cancel_futures and wait and self.thread is not None:
                self.cancel_rest = True  # the thread cancels what idle workers cannot take
            elif cancel_futures:
                dropped, self.pending = list(self.pending), deque()
            accepted = bool(self.pending)
        for call in dropped:
            call.future.cancel()
        if accepted and self.thread is None:
            self._start()  # a call was accepted before shutdown: it runs
        with self.start_lock:
            thread = self.thread
        if thread is None:
            self._close_wakeup()
            return
        self._wake()
        if wait and thread is not threading.current_thread():
            thread.join()
            _ended(thread)

    # --- running calls ------------------------------------------------------------------

    def _run_inline(self, call: _Call) -> None:
        if not call.future.set_running_or_notify_cancel():
            return
        chunk = Chunk(call.index, [(call.fn, call.args, call.kwargs)], True, (call.index,))
        (outcome,) = run_chunk(self.caller, chunk, self.seed, restore_rng=True).outcomes()
        self._settle(call, outcome)

    def _start(self) -> None:
        """Open the pool in this (the caller's) thread, then start the manager thread."""
        with self.start_lock:
            if self.thread is not None:
                return
            try:
                pool = self.plan.open(owned_cores())
                pool.ready_for_threads()  # workers replaced later are forked safely
            except Exception as exc:  # e.g. an SSH host cannot be reached: no call can run
                self._break(exc, {})
                return
            self.thread = threading.Thread(
                target=self._manage, args=(pool,), name="cheerful-executor", daemon=True
            )
            with _running_lock:
                _running.add(self)
            self.thread.start()

    def _wake(self) -> None:
        with self.lock, contextlib.suppress(OSError):
            if self.wake_w >= 0:
                os.write(self.wake_w, b"x")

    def _close_wakeup(self) -> None:
        with self.lock:
            fds, self.wake_r, self.wake_w = (self.wake_r, self.wake_w), -1, -1
        for fd in fds:
            if fd >= 0:
                os.close(fd)

    def _manage(self, pool: Pool) -> None:
        inflight: dict[int, list[_Call]] = {}
        try:
            while self.broken is None:
                self._dispatch(pool, inflight)  # may drop cancelled calls: check after it
                if not self._keep_going(inflight):
                    break
                events = pool.wait(None, wakeup=self.wake_r)
                while events:  # popped one by one: no settled value stays referenced here
                    self._handle(events.pop(), inflight)
                _drain(self.wake_r)
            if self.broken is not None:  # the initializer failed
                self._break(self.broken, inflight)
        except BrokenPlan as exc:  # e.g. every SSH host is lost
            self._break(exc, inflight)
        except BaseException as exc:  # noqa: BLE001 - never leave a future waiting for ever
            failure = BrokenPlan(f"the executor's manager failed: {exc!r}")
            failure.__cause__ = exc
            self._break(failure, inflight)
        finally:
            try:
                pool.close(kill=self.broken is not None)
            finally:
                self._close_wakeup()
                for held in self.unheard:  # finished, never asked (even dropped): say it now
                    say_unheard(held)
                with _running_lock:
                    _running.discard(self)

    def _break(self, exc: Exception, inflight: dict) -> None:
        """The plan cannot run calls: every queued and running one fails with ``exc``."""
        with self.lock:
            if self.broken is None:
                self.broken = exc
            calls = [c for calls in inflight.values() for c in calls] + list(self.pending)
            self.pending.clear()
            inflight.clear()
        for call in calls:
            if not call.future.done() and (
                call.running or call.future.set_running_or_notify_cancel()
            ):
                call.future.set_exception(exc)

    def _keep_going(self, inflight: dict) -> bool:
        with self.lock:
            dropped: list[_Call] = []
            if self.cancel_rest:
                dropped, self.pending, self.cancel_rest = list(self.pending), deque(), False
            going = bool(self.pending or inflight or not self.closing)
        for call in dropped:
            call.future.cancel()
        return going

    def _dispatch(self, pool: Pool, inflight: dict) -> None:
        while pool.idle():
            calls = self._take(pool.workers)
            if not calls:
                return
            work = self._work(calls)
            try:
                pool.send(work)
            except SerializationError as exc:
                self._reject_unpicklable(calls, exc)
                continue
            inflight[work.work_id] = calls

    def _take(self, workers: int) -> list[_Call]:
        with self.lock:
            size = max(1, math.ceil(len(self.pending) / (2 * workers)))
            taken: list[_Call] = []
            while self.pending and len(taken) < size:
                if taken and self.pending[0].alone:
                    break
                call = self.pending.popleft()
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
        return Work(work_id, self.fn_key, self.fn_bytes, chunk, self.seed, self.inner, self.caller)

    def _reject_unpicklable(self, calls: list[_Call], exc: SerializationError) -> None:
        """A chunk could not be pickled: fail the calls that cannot be; send the rest alone."""
        good = []
        for call in calls:
            error = exc
            if len(calls) > 1:
                try:
                    check_items([(call.fn, call.args, call.kwargs)])
                except SerializationError as err:
                    error = err
                else:
                    call.alone = True
                    good.append(call)
                    continue
            failure = SerializationError(f"call {call.index} cannot be sent to a worker: {error}")
            failure.__cause__ = error.__cause__ or error
            call.future.set_exception(failure)
        with self.lock:
            self.pending.extendleft(reversed(good))

    def _handle(self, event: Done | Crashed, inflight: dict) -> None:
        calls = inflight.pop(event.work_id)
        by_index = {c.index: c for c in calls}
        if isinstance(event, Done) and event.result.unloadable and len(calls) > 1:
            for call in calls:  # one of them cannot travel: send each alone to find it
                call.alone = True
            with self.lock:
                self.pending.extendleft(reversed(calls))
            return
        if isinstance(event, Done):
            said = event.result.outputs or {}
            for outcome in event.result.outcomes():
                call = by_index[outcome.index]
                if outcome.index in said:
                    self.unheard.append(call.future.hold_output(said[outcome.index], outcome.index))
                    if len(self.unheard) > 1000:  # forget those said already
                        self.unheard = [held for held in self.unheard if held]
                self._settle(call, outcome)
            return
        culprits = [by_index[event.index]] if event.index in by_index else []
        if event.index is None:  # died before its first task: try again, a few times
            for call in calls:
                call.start_crashes += 1
            culprits = [c for c in calls if c.start_crashes >= MAX_START_CRASHES]
        for culprit in culprits:
            (outcome,) = crash_result(culprit.index, event).outcomes()
            self._settle(culprit, outcome)
        gone = {c.index for c in culprits}
        again = [c for c in calls if c.index not in gone]
        with self.lock:
            self.pending.extendleft(reversed(again))

    def _settle(self, call: _Call, outcome: Outcome) -> None:
        """Settle a call's future with its outcome."""
        if outcome.ok:
            call.future.set_result(outcome.value)
            return
        exc = rebuild_exception(outcome.error, call.index)
        if isinstance(exc, _InitializerFailed):
            exc = self._initializer_failed(str(exc.args[0]) if exc.args else "")
        call.future.set_exception(exc)

    def _initializer_failed(self, text: str) -> Exception:
        """The initializer raised: log it as the standard executors do; break."""
        with self.lock:
            first = self.broken is None
            if first:
                self.broken = BrokenPlan(f"the executor's initializer failed:\n{text}")
            broken = self.broken
        if first:
            _LOG.critical("Exception in initializer:\n%s", text.rstrip())
        return broken


_work_ids = itertools.count()


def _ended(thread: threading.Thread) -> None:
    """Wait until the OS thread of a joined ``thread`` is gone too (Linux: join returns a
    moment before it is), so that a pool started next can still fork its zygote."""
    task = f"/proc/self/task/{thread.native_id}"
    deadline = time.monotonic() + 1.0
    while os.path.exists(task) and time.monotonic() < deadline:
        time.sleep(0.0002)


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
    # Like ProcessPoolExecutor at exit: submitted calls finish (queued ones too, unless
    # cancelled), no new call is taken, and no worker process is left behind.
    global _exiting
    _exiting = True
    with _running_lock:
        managers = list(_running)
    for manager in managers:
        manager.shutdown(wait=True, cancel_futures=False)
