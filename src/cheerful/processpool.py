"""Reusable local worker processes that run chunks: :class:`ProcessPool`.

Each worker is a child process with a duplex pipe; it keeps the last function it was
sent (imports stay warm) and writes the index of the task it is running into a shared
array before the task starts, so when a worker dies (segfault, ``os._exit``, OOM kill)
the pool knows which task killed it, reports :class:`~cheerful.pool.Crashed` and starts a
new worker. The processes plan, the ssh plan's host agents and the durable worker's
slots all run their tasks in such a pool (the last two subclass it).

With the ``fork`` start method the workers are forked by a zygote (:mod:`cheerful.zygote`),
never by the caller once threads may run there, and they die with the caller.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import multiprocessing.util
import os
import signal
import sys
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from .errors import SerializationError
from .gpus import VISIBLE
from .levels import set_levels
from .pool import Crashed, Done, Pool, Work
from .runner import ONE_GO, run_chunk
from .serialize import dumps, dumps_oob, loads, loads_oob, pack_result
from .task import ChunkResult, ErrorInfo
from .taskio import Catcher, live_default
from .zygote import (
    SharedArray,
    Zygote,
    close_in_children,
    die_with_parent,
    fork_here,
    load_prctl,
    single_threaded,
)

__all__ = [
    "FN_BYTES",
    "FN_KEY",
    "IDLE",
    "SEED",
    "ProcessPool",
    "receive_work",
    "set_share",
    "settle_child",
    "share_of",
    "shared_array",
    "unloadable_result",
    "work_header",
]

IDLE = -1
"""A slot's mark when it runs no task."""
_forked_by: list[int | None] = [None]  # set around a fork here: the new worker's parent


class _Slot:
    """A worker: its place in the pool, its process and pipe, and the chunk it runs."""

    def __init__(self, position: int, process: mp.process.BaseProcess, conn: Connection):
        self.position, self.process, self.conn = position, process, conn
        self.work: Work | None = None
        self.fn_key = ""


class ProcessPool(Pool):
    """Worker processes, each with a duplex pipe; replaced when they die."""

    def __init__(
        self, workers: int, cores_each: int, method: str, devices: list[str] | None = None
    ) -> None:
        self.workers = workers
        self.devices = devices  # one GPU per worker (CUDA_VISIBLE_DEVICES), by position
        self._ctx = mp.get_context(method)
        self._method = method
        self._cores_each = cores_each
        self._marks = shared_array(self._ctx, "q", workers)
        self._fractions = shared_array(self._ctx, "d", 2 * workers)  # see set_share
        self._slots: list[_Slot] = []
        self._zygotes: list[Zygote] = []  # the one in use last (see cheerful.zygote)
        # multiprocessing joins live children at exit; its finalizers run first, so
        # the workers are told to stop before it waits for them.
        args = (self._slots, True, self._zygotes)
        mp.util.Finalize(self, _close_slots, args=args, exitpriority=10)
        if method == "fork":
            load_prctl()  # once here: each worker arms PR_SET_PDEATHSIG in microseconds
        for position in range(workers):
            self._slots.append(self._start(position))

    def ready_for_threads(self) -> None:
        """Threads are about to use this pool (an executor's manager): fork its zygote now,
        while that is still safe; workers started from now on are forked by it."""
        if self._method == "fork" and not self._zygotes and single_threaded():
            self._new_zygote()

    def _start(self, position: int) -> _Slot:
        """Start the worker at ``position``: forked here while no other thread runs, else
        by the pool's zygote (see :mod:`cheerful.zygote`); spawned if so chosen."""
        for how in ("here", "zygote", "here anyway"):  # the last: no zygote can be had
            parent, child = self._ctx.Pipe(duplex=True)
            close_in_children(parent)  # so that the worker sees EOF when this process dies
            process = self._launch(how, parent, child, position)
            if process is not None:
                self._marks[position] = IDLE
                return _Slot(position, process, parent)
            parent.close()
            child.close()
        raise AssertionError("unreachable: the last way always starts a worker")

    def _launch(self, how: str, parent: Connection, child: Connection, position: int) -> Any:
        if how == "zygote":
            return self._forked(child, position)
        forking = self._method == "fork"
        if how == "here" and forking and (self._zygotes or not single_threaded()):
            return None
        # A forked child inherits the caller's ends of every pipe; it closes them.
        inherited = [s.conn for s in self._slots] + [parent] if forking else []
        target, args = self._child_main(child, position, inherited)
        process = self._ctx.Process(target=target, args=args, name=f"cheerful-worker-{position}")
        main = threading.current_thread() is threading.main_thread()
        _forked_by[0] = os.getpid() if forking and main else None  # it dies with us
        try:
            if how == "here" and forking and not fork_here(process.start):
                process.kill()  # a thread ran at that fork after all: not to be trusted
                process.join()
                return None
            if how != "here" or not forking:
                process.start()
        finally:
            _forked_by[0] = None
        child.close()
        return process

    def _forked(self, child: Connection, position: int) -> Any:
        """A worker forked by the zygote (a new one if there is none, or it was killed);
        None when the pool cannot have one."""
        for _ in range(2):
            if not self._zygotes and not self._new_zygote():
                return None
            try:
                return self._zygotes[-1].fork(child, position)
            except OSError:  # the zygote is gone (killed): a new one
                self._zygotes.pop().close()
        return None

    def _new_zygote(self) -> bool:
        zygote = Zygote.start(self)
        if zygote is not None:
            self._zygotes.append(zygote)
        return zygote is not None

    def _child_main(self, child: Connection, position: int, inherited: list) -> tuple:
        """The function a new worker process runs, and its arguments (a subclass may run
        another loop in its workers, e.g. the durable worker's, see
        :mod:`cheerful.durable.worker.slots`)."""
        device = self.devices[position] if self.devices else None
        args = (child, self._marks, position, self._cores_each, inherited, device, self._fractions)
        return _worker_main, args

    def _caller_only(self) -> list:
        """Objects of the caller (with ``close()``) that a forked zygote closes at once."""
        return []

    def _zygote_state(self) -> tuple[type, dict]:
        """What a fresh zygote needs to run :meth:`_child_main`: the class and its state."""
        skip = ("_slots", "_ctx", "_zygotes")
        return type(self), {k: v for k, v in self.__dict__.items() if k not in skip}

    def idle(self) -> int:
        return sum(1 for s in self._slots if s.work is None)

    def running_fraction(self) -> float:
        fractions, marks = self._fractions, self._marks
        return sum(share_of(fractions, marks, s.position) for s in self._slots if s.work)

    def send(self, work: Work) -> None:
        slot = self._pick(work.fn_key)
        try:
            payload, buffers = dumps_oob(work.chunk)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - SystemExit from a __reduce__ too
            raise SerializationError(f"a chunk of tasks cannot be serialized: {exc!r}") from exc
        fresh = slot.fn_key != work.fn_key
        sizes = [b.raw().nbytes for b in buffers]
        header = work_header(work, work.fn_bytes if fresh else b"", sizes)
        self._marks[slot.position] = IDLE
        slot.work, slot.fn_key = work, work.fn_key
        try:
            slot.conn.send_bytes(dumps(header))
            slot.conn.send_bytes(payload)
            for buf in buffers:
                slot.conn.send_bytes(buf.raw())
        except OSError:  # the worker died before it read its chunk: wait() reports it
            slot.fn_key = ""

    def _pick(self, fn_key: str) -> _Slot:
        free = [s for s in self._slots if s.work is None]
        for slot in free:
            if slot.fn_key == fn_key:
                return slot
        return free[0]

    def wait(self, timeout: float | None = None, wakeup: int | None = None) -> list[Done | Crashed]:
        busy = [s for s in self._slots if s.work is not None]
        if not busy and wakeup is None:
            return []
        handles = [s.conn for s in busy] + [s.process.sentinel for s in busy]
        ready = set(wait(handles + ([wakeup] if wakeup is not None else []), timeout))
        events = []
        for slot in busy:
            if slot.conn in ready or slot.process.sentinel in ready:
                events.append(self._collect(slot))
        return events

    def _collect(self, slot: _Slot) -> Done | Crashed:
        work = slot.work
        assert work is not None
        try:
            data = slot.conn.recv_bytes()
        except (EOFError, OSError):
            return self._crashed(slot, work)
        slot.work = None  # unpacked when read: the worker may have its next chunk first
        return Done(work.work_id, unpack=functools.partial(_unpack, data, work.chunk.indices))

    def _crashed(self, slot: _Slot, work: Work) -> Crashed:
        slot.process.join(timeout=5)
        code = slot.process.exitcode
        mark = self._marks[slot.position]
        index = None if mark < 0 else int(mark)  # IDLE, or ONE_GO: no task is known
        self._replace(slot)
        signame = _signal_name(code)
        return Crashed(work.work_id, index, _crash_reason(code), code, signame, mark == ONE_GO)

    def _replace(self, slot: _Slot) -> None:
        slot.conn.close()
        if slot.process.is_alive():
            slot.process.kill()
            slot.process.join(timeout=5)
        self._slots[slot.position] = self._start(slot.position)

    def abandon(self) -> None:
        for slot in self._slots:
            if slot.work is not None:
                slot.process.kill()
                slot.process.join(timeout=5)
                self._replace(slot)

    def close(self, *, kill: bool = False) -> None:
        _close_slots(self._slots, kill, self._zygotes)


def _close_slots(slots: list[_Slot], kill: bool, zygotes: list[Zygote]) -> None:
    """Stop the workers: EOF lets idle ones exit; busy ones (or all, with ``kill``) die;
    then the zygotes end."""
    for slot in slots:
        if kill or slot.work is not None:
            slot.process.kill()
        slot.conn.close()
    for slot in slots:
        slot.process.join(timeout=5)
        if slot.process.is_alive():
            slot.process.kill()
            slot.process.join(timeout=5)
    slots.clear()
    while zygotes:
        zygotes.pop().close()


def _unpack(data: bytes, indices: Sequence[int]) -> ChunkResult:
    """A chunk's result as its worker packed it (:func:`~cheerful.serialize.pack_result`)."""
    try:
        return loads(data)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - the worker is fine, these results lost
        return _results_lost(indices, exc)


def _results_lost(indices: Sequence[int], exc: BaseException) -> ChunkResult:
    """Every task of a chunk failed: its results came back but cannot be unpickled here."""
    from .errors import RebuildFailed  # made on first use (cheerful.errors)

    error = RebuildFailed(
        f"the results of tasks {_span(indices)} cannot be unpickled in the caller: "
        f"{type(exc).__name__}: {exc}"
    )
    info = ErrorInfo.from_exception(error, dumps)
    return ChunkResult(tuple(indices), [None] * len(indices), dict.fromkeys(indices, info))


def _span(indices: Sequence[int]) -> str:
    return str(indices[0]) if len(indices) == 1 else f"{indices[0]}..{indices[-1]}"


def _signal_name(code: int | None) -> str | None:
    if code is None or code >= 0:
        return None
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _crash_reason(code: int | None) -> str:
    if code is None:
        return "its worker process stopped answering"
    if code < 0:
        name = _signal_name(code)
        hint = {
            "SIGSEGV": " (segmentation fault in native code)",
            "SIGKILL": " (often the out-of-memory killer)",
            "SIGABRT": " (aborted by native code)",
            "SIGBUS": " (bus error in native code)",
        }.get(name or "", "")
        return f"its worker process was killed by {name}{hint}"
    return f"its worker process exited with code {code} (os._exit or a native exit)"


# --- inside the worker ------------------------------------------------------------------


def _worker_main(
    conn: Connection,
    marks,
    position: int,
    cores: int,
    inherited,
    device: str | None = None,
    fractions=None,
) -> None:
    """A worker's loop: receive a chunk, run it, send back its outcomes, until EOF."""
    settle_child(cores, inherited, conn, device)
    cache: dict[str, object] = {}
    marks = getattr(marks, "view", marks)  # a SharedArray's memoryview: no Python call
    catcher = None if live_default() else Catcher().install()
    shares = getattr(fractions, "view", fractions)
    mark = functools.partial(marks.__setitem__, position)  # a C call: cheapest per task

    def progressed(share: float) -> None:
        set_share(shares, marks, position, share)

    report = progressed if shares is not None else None
    while (received := receive_work(conn)) is not None:
        conn.send_bytes(_serve(*received, cache, mark, catcher, report))


# header fields: work_id, fn_key, fn_bytes, seed, levels, indices, one_go, buffer sizes
FN_KEY, FN_BYTES, SEED, _LEVELS, _INDICES, _ONE_GO, _SIZES = 1, 2, 3, 4, 5, 6, 7


def work_header(work: Work, fn_bytes: bytes, sizes: list[int]) -> tuple:
    """What a worker reads first of a chunk (:func:`receive_work`): ``work`` with the
    function's bytes (empty when the worker has it already) and its buffers' sizes."""
    indices, one_go = work.chunk.indices, work.one_go
    return (work.work_id, work.fn_key, fn_bytes, work.seed, work.levels, indices, one_go, sizes)


def receive_work(conn: Connection) -> tuple[tuple, bytes, list[bytearray]] | None:
    """The next chunk sent by :meth:`ProcessPool.send`: header, payload, buffers; None at EOF."""
    try:
        header = loads(conn.recv_bytes())
        payload = conn.recv_bytes()
        return header, payload, [_recv_buffer(conn, size) for size in header[_SIZES]]
    except (EOFError, OSError, KeyboardInterrupt):
        return None


def _recv_buffer(conn: Connection, size: int) -> bytearray:
    buf = bytearray(size)  # writable, so arrays rebuilt on it can be changed in place
    conn.recv_bytes_into(buf)
    return buf


def _serve(
    header, payload: bytes, buffers: list, cache: dict, mark, catcher=None, report=None
) -> bytes:
    try:
        fn = _function(header, cache)
        chunk = loads_oob(payload, buffers)
    except BaseException as exc:  # noqa: BLE001 - the chunk cannot be rebuilt here: its
        return pack_result(unloadable_result(header[_INDICES], exc))  # tasks fail, we go on
    set_levels(header[_LEVELS])
    result = run_chunk(
        fn, chunk, header[SEED], mark=mark, catcher=catcher, on_progress=report, one_go=header[_ONE_GO]
    )
    return pack_result(result)


def _function(header, cache: dict):
    key, fn_bytes = header[FN_KEY], header[FN_BYTES]
    if not fn_bytes and key in cache:
        return cache[key]
    cache.clear()  # one function at a time: a map's, or the executor's
    cache[key] = loads(fn_bytes)
    return cache[key]


def unloadable_result(indices: Sequence[int], exc: BaseException) -> ChunkResult:
    """Every task of a chunk failed because its function or inputs cannot be unpickled."""
    from .errors import RebuildFailed  # made on first use (cheerful.errors)

    error = RebuildFailed(
        f"the function or inputs of this chunk cannot be unpickled in the worker: "
        f"{type(exc).__name__}: {exc} (is every module they need importable there?)"
    )
    info = ErrorInfo.from_exception(error, dumps)
    return ChunkResult(
        tuple(indices), [None] * len(indices), dict.fromkeys(indices, info), unloadable=True
    )


def shared_array(ctx: Any, typecode: str, size: int) -> Any:
    """A small array of numbers shared with worker processes, writable from both sides.

    Forked workers share a memory file that a zygote can map too (a fraction of a
    millisecond to make); other start methods need multiprocessing's RawArray (a temp-file
    arena, ~5-10 ms).
    """
    if ctx.get_start_method() == "fork":
        return SharedArray(typecode, size)
    return ctx.RawArray(typecode, size)


def set_share(fractions: Any, marks: Any, position: int, share: float) -> None:
    """The task running in slot ``position`` says it is ``share`` done (``cf.task_progress``).

    Each slot has two numbers: the task the share is of, and the share; a share of a task
    that is no longer the slot's running one counts for nothing, so a task start resets
    nothing (it costs no time per task)."""
    fractions[2 * position + 1] = share
    fractions[2 * position] = marks[position]


def share_of(fractions: Any, marks: Any, position: int) -> float:
    """How far the task running in slot ``position`` says it is (0.0 if it said nothing)."""
    index = marks[position]
    return fractions[2 * position + 1] if index >= 0 and fractions[2 * position] == index else 0.0


def settle_child(cores: int, inherited: list, own: Connection, device: str | None = None) -> None:
    """Set up a fresh worker: signals, inherited pipes, cores, its GPU, random state; a
    worker forked by the caller dies with it (a zygote's workers die with their zygote)."""
    parent, _forked_by[0] = _forked_by[0], None
    if parent is not None and not die_with_parent(parent):
        os._exit(1)  # the caller died while this worker started
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle
    for other in inherited:
        if other is not own and not other.closed:
            other.close()
    os.environ["CHEERFUL_CORES"] = str(cores)
    os.environ["CHEERFUL_IN_WORKER"] = "1"
    if device is not None:  # before any task can initialize CUDA
        os.environ[VISIBLE] = device
    numpy = sys.modules.get("numpy")
    if numpy is not None:  # a forked worker would repeat its parent's numpy stream
        numpy.random.seed()
