"""Reusable local worker processes that run chunks: :class:`ProcessPool`.

Each worker is a child process with a duplex pipe; it keeps the last function it was
sent (imports stay warm) and writes the index of the task it is running into a shared
array before the task starts, so when a worker dies (segfault, ``os._exit``, OOM kill)
the pool knows which task killed it, reports :class:`~cheerful.pool.Crashed` and starts a
new worker. The processes plan, the ssh plan's host agents and the durable worker's
slots all run their tasks in such a pool (the last two subclass it).
"""

from __future__ import annotations

import mmap
import multiprocessing as mp
import multiprocessing.util
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from .errors import SerializationError
from .levels import set_levels
from .pool import Crashed, Done, Pool, Work
from .runner import run_chunk
from .serialize import dumps, dumps_oob, loads, loads_oob, pack_result
from .task import ChunkResult, ErrorInfo

__all__ = [
    "FN_BYTES",
    "FN_KEY",
    "IDLE",
    "SEED",
    "ProcessPool",
    "receive_work",
    "settle_child",
    "shared_array",
    "unloadable_result",
]

IDLE = -1
"""A slot's mark when it runs no task."""


@dataclass
class _Slot:
    position: int
    process: mp.process.BaseProcess
    conn: Connection
    work: Work | None = None
    fn_key: str = ""


class ProcessPool(Pool):
    """Worker processes, each with a duplex pipe; replaced when they die."""

    def __init__(self, workers: int, cores_each: int, method: str) -> None:
        self.workers = workers
        self._ctx = mp.get_context(method)
        self._method = method
        self._cores_each = cores_each
        self._marks = shared_array(self._ctx, "q", workers)
        self._slots: list[_Slot] = []
        for position in range(workers):
            self._slots.append(self._start(position))
        # multiprocessing joins live children at exit; its finalizers run first, so
        # the workers are told to stop before it waits for them.
        mp.util.Finalize(self, _close_slots, args=(self._slots, True), exitpriority=10)

    def _start(self, position: int) -> _Slot:
        parent, child = self._ctx.Pipe(duplex=True)
        # A forked child inherits the caller's ends of every pipe; it must close them, or
        # a worker would never see EOF when the caller dies.
        inherited = [s.conn for s in self._slots] + [parent] if self._method == "fork" else []
        target, args = self._child_main(child, position, inherited)
        process = self._ctx.Process(target=target, args=args, name=f"cheerful-worker-{position}")
        process.start()
        child.close()
        self._marks[position] = IDLE
        return _Slot(position, process, parent)

    def _child_main(self, child: Connection, position: int, inherited: list) -> tuple:
        """The function a new worker process runs, and its arguments (a subclass may run
        another loop in its workers, e.g. the durable worker's, see
        :mod:`cheerful.durable.worker.slots`)."""
        return _worker_main, (child, self._marks, position, self._cores_each, inherited)

    def idle(self) -> int:
        return sum(1 for s in self._slots if s.work is None)

    def send(self, work: Work) -> None:
        slot = self._pick(work.fn_key)
        try:
            payload, buffers = dumps_oob(work.chunk)
        except Exception as exc:
            raise SerializationError(f"a chunk of tasks cannot be serialized: {exc}") from exc
        fresh = slot.fn_key != work.fn_key
        sizes = [b.raw().nbytes for b in buffers]
        header = (
            work.work_id,
            work.fn_key,
            work.fn_bytes if fresh else b"",
            work.seed,
            work.levels,
            work.chunk.indices,
            sizes,
        )
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
        slot.work = None
        return Done(work.work_id, loads(data))

    def _crashed(self, slot: _Slot, work: Work) -> Crashed:
        slot.process.join(timeout=5)
        code = slot.process.exitcode
        mark = self._marks[slot.position]
        index = None if mark == IDLE else int(mark)
        self._replace(slot)
        signame = _signal_name(code)
        return Crashed(work.work_id, index, _crash_reason(code), code, signame)

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
        _close_slots(self._slots, kill)


def _close_slots(slots: list[_Slot], kill: bool) -> None:
    """Stop the workers: EOF lets idle ones exit; busy ones (or all, with ``kill``) die."""
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


def _worker_main(conn: Connection, marks, position: int, cores: int, inherited) -> None:
    """A worker's loop: receive a chunk, run it, send back its outcomes, until EOF."""
    settle_child(cores, inherited, conn)
    cache: dict[str, object] = {}

    def mark(index: int) -> None:
        marks[position] = index

    while (received := receive_work(conn)) is not None:
        conn.send_bytes(_serve(*received, cache, mark))


# header fields: work_id, fn_key, fn_bytes, seed, levels, indices, buffer sizes
FN_KEY, FN_BYTES, SEED, _LEVELS, _INDICES, _SIZES = 1, 2, 3, 4, 5, 6


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


def _serve(header, payload: bytes, buffers: list, cache: dict, mark) -> bytes:
    try:
        fn = _function(header, cache)
        chunk = loads_oob(payload, buffers)
    except Exception as exc:  # the chunk cannot be rebuilt here: its tasks fail, we go on
        return pack_result(unloadable_result(header[_INDICES], exc))
    set_levels(header[_LEVELS])
    return pack_result(run_chunk(fn, chunk, header[SEED], mark=mark))


def _function(header, cache: dict):
    key, fn_bytes = header[FN_KEY], header[FN_BYTES]
    if not fn_bytes and key in cache:
        return cache[key]
    cache.clear()  # one function at a time: a map's, or the executor's
    cache[key] = loads(fn_bytes)
    return cache[key]


def unloadable_result(indices: Sequence[int], exc: BaseException) -> ChunkResult:
    """Every task of a chunk failed because its function or inputs cannot be unpickled."""
    error = SerializationError(
        f"the function or inputs of this chunk cannot be unpickled in the worker: "
        f"{type(exc).__name__}: {exc} (is every module they need importable there?)"
    )
    info = ErrorInfo.from_exception(error, dumps)
    return ChunkResult(
        tuple(indices), [None] * len(indices), dict.fromkeys(indices, info), unloadable=True
    )


def shared_array(ctx: Any, typecode: str, size: int) -> Any:
    """A small array of numbers shared with worker processes, writable from both sides.

    Forked workers share an anonymous mapping (a fraction of a millisecond to make);
    other start methods need multiprocessing's RawArray (a temp-file arena, ~5-10 ms).
    """
    if ctx.get_start_method() == "fork":
        return memoryview(mmap.mmap(-1, max(1, size) * 8)).cast("B").cast(typecode)
    return ctx.RawArray(typecode, size)


def settle_child(cores: int, inherited: list, own: Connection) -> None:
    """Set up a fresh worker: signals, inherited pipes, cores, random state."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle
    for other in inherited:
        if other is not own and not other.closed:
            other.close()
    os.environ["CHEERFUL_CORES"] = str(cores)
    os.environ["CHEERFUL_IN_WORKER"] = "1"
    numpy = sys.modules.get("numpy")
    if numpy is not None:  # a forked worker would repeat its parent's numpy stream
        numpy.random.seed()
