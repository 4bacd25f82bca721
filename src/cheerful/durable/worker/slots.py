"""The durable worker's slots: reusable child processes that capture each task's output.

A :class:`SlotPool` is a :class:`~cheerful.processpool.ProcessPool` (imports stay
warm, a crash is pinned on its task by the shared marker) whose children send each
chunk's stdout and stderr, at the file descriptor level, to a file of its own
(``<log_dir>/<work_id>.log``) and report the byte span of each task
(:class:`LoggedResult`). Two more shared arrays hold, per slot, when the running task
started and where its output begins, so the parent can stop a task that overran its
timeout and still find the output of a task whose process died.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from cheerful.errors import SerializationError
from cheerful.levels import set_levels
from cheerful.pool import Done
from cheerful.processpool import (
    FN_BYTES,
    FN_KEY,
    SEED,
    ProcessPool,
    receive_work,
    set_share,
    settle_child,
    share_of,
    shared_array,
)
from cheerful.runner import run_chunk
from cheerful.serialize import dumps, loads, loads_oob, pack_result
from cheerful.task import Chunk, ChunkResult, ErrorInfo

from ..checkpoints import DurableContext, set_context
from .places import TaskPlaces

__all__ = ["LoggedResult", "PackedChunk", "SlotPool", "log_path"]


@dataclass(frozen=True)
class PackedChunk:
    """Tasks of a durable chunk as they came from the queue: ``inputs`` is the pickled
    list of all the chunk's items; the tasks to run are ``indices``, whose items sit at
    ``positions`` of that list. The items are unpickled in the child, never the parent."""

    indices: tuple[int, ...]
    positions: tuple[int, ...]
    inputs: bytes
    count: int
    star: bool = False
    job: str = ""  # whose checkpoints and outputs the tasks save
    attempts: tuple[int, ...] = ()  # the try each task of ``indices`` is on
    template: str | None = None  # the job's unpacked files: each task runs in a copy


class LoggedResult(ChunkResult):
    """A chunk's result plus ``output``: the ``(start, stop)`` byte span of each task
    that wrote anything, in the chunk's log file, and ``seconds_each``: how long each
    task ran."""

    FIELDS = (*ChunkResult.FIELDS, "output", "seconds_each")
    output: dict[int, tuple[int, int]]
    seconds_each: dict[int, float]

    def __init__(
        self,
        *args: Any,
        output: dict[int, tuple[int, int]] | None = None,
        seconds_each: dict[int, float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, output=output or {}, seconds_each=seconds_each or {}, **kwargs)


def log_path(log_dir: str, work_id: int) -> str:
    """The file that collects the stdout and stderr of chunk ``work_id``."""
    return os.path.join(log_dir, f"{work_id}.log")


# --- the pool, in the worker process ----------------------------------------------------


class SlotPool(ProcessPool):
    """Child processes that run :class:`PackedChunk` work with captured output.

    A :class:`~cheerful.processpool.ProcessPool` (same pipe protocol, same crash
    attribution) whose children run :func:`_slot_main`; it adds the start time and output
    offset of each slot's running task, :meth:`running` to read them and :meth:`kill` to
    stop one chunk. Children die with the worker (Linux) and ignore SIGINT and SIGTERM:
    the worker decides when they stop. With a ``store``, a task's :func:`cf.checkpoint`
    goes to the job named by its work's function key (the worker keys code by job id).
    """

    def __init__(
        self,
        slots: int,
        log_dir: str,
        *,
        cores_each: int = 1,
        method: str = "fork",
        store: Any = None,
        devices: list[str] | None = None,
    ):
        ctx = mp.get_context(method)
        self.log_dir, self.store, self.devices = log_dir, store, devices
        self._crash_offsets: dict[int, int] = {}
        self.starts, self.offsets = shared_array(ctx, "d", slots), shared_array(ctx, "q", slots)
        self.leaving = shared_array(ctx, "b", 1)
        super().__init__(slots, cores_each, method, devices)

    def tell_leaving(self) -> None:
        """Make ``cf.interrupted()`` True in every slot: tasks should checkpoint now."""
        self.leaving[0] = 1

    def _child_main(self, child: Connection, position: int, inherited: list) -> tuple:
        # The slot's parent, known here before the fork (a forkserver's child has another).
        parent = os.getpid() if self._method != "forkserver" else None
        device = self.devices[position] if self.devices else None  # one GPU per slot
        capture = (
            self.log_dir,
            self.starts,
            self.offsets,
            self.store,
            self.leaving,
            parent,
            device,
            self._fractions,
        )
        return _slot_main, (child, self._marks, position, self._cores_each, inherited, capture)

    def running(self) -> dict[int, tuple[int, float]]:
        """``{work_id: (task index, monotonic start)}`` of the slots running a task now."""
        found = {}
        for slot in self._slots:
            index = self._marks[slot.position]
            if slot.work is not None and index >= 0:
                found[slot.work.work_id] = (int(index), self.starts[slot.position])
        return found

    def shares(self) -> dict[int, float]:
        """``{work_id: share}``: how far the task each slot runs now says it is
        (``cf.task_progress``; 0.0 until it says)."""
        fractions, marks = self._fractions, self._marks
        return {
            s.work.work_id: share_of(fractions, marks, s.position)
            for s in self._slots
            if s.work is not None
        }

    def kill(self, work_id: int) -> bool:
        """Kill the process running ``work_id``; :meth:`wait` then reports it Crashed."""
        slot = self._holding(work_id)
        if slot is not None:
            slot.process.kill()
        return slot is not None

    def output_start(self, work_id: int) -> int:
        """Where the output of the task running ``work_id`` now began in its log file."""
        slot = self._holding(work_id)
        return int(self.offsets[slot.position]) if slot is not None else 0

    def crash_offset(self, work_id: int) -> int:
        """Where the output of the task that crashed ``work_id`` began in its log file."""
        return self._crash_offsets.pop(work_id, 0)

    def _holding(self, work_id: int):
        for slot in self._slots:
            if slot.work is not None and slot.work.work_id == work_id:
                return slot
        return None

    def _crashed(self, slot, work):
        self._crash_offsets[work.work_id] = int(self.offsets[slot.position])
        return super()._crashed(slot, work)

    def _collect(self, slot):
        """A result that cannot be unpickled here fails the chunk's tasks, not the worker."""
        work = slot.work
        try:
            return super()._collect(slot)
        except Exception as exc:
            slot.work = None
            err = SerializationError(f"a task's result cannot be loaded by the worker: {exc}")
            info = ErrorInfo.from_exception(err, dumps)
            indices = work.chunk.indices
            nothing = [None] * len(indices)
            return Done(work.work_id, ChunkResult(indices, nothing, dict.fromkeys(indices, info)))


# --- inside a slot process --------------------------------------------------------------


def _slot_main(conn: Connection, marks, position: int, cores: int, inherited, capture) -> None:
    """A durable slot's loop: receive a packed chunk, run it with its output captured,
    send back a :class:`LoggedResult`, until EOF."""
    log_dir, starts, offsets, store, leaving, worker_pid, device, fractions = capture
    settle_child(cores, inherited, conn, device)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the worker decides when a slot stops
    _die_with_parent(worker_pid)
    set_levels(())
    _standard_streams()
    fn_key, fn, problem, job = "", None, None, None
    places = TaskPlaces(os.path.join(log_dir, f"slot-{position}"), store)
    while (received := receive_work(conn)) is not None:
        header, payload, buffers = received
        work_id, key, fn_bytes, seed = header[0], header[FN_KEY], header[FN_BYTES], header[SEED]
        if key != fn_key or fn_bytes:
            fn_key, fn, problem = key, *_load_function(fn_bytes)
        packed = loads_oob(payload, buffers)
        if store is not None and packed.job != job:
            job = packed.job
            set_context(DurableContext(store, job, leaving))
        capture_to = _Capture(log_path(log_dir, work_id), marks, starts, offsets, position)
        capture_to.fractions = fractions
        tries = dict(zip(packed.indices, packed.attempts, strict=False))
        placed = places.wrap(fn, packed.job, packed.template, tries) if fn is not None else fn
        places.seconds.clear()
        result = capture_to.run(placed, problem, packed, seed)
        result = result.replace(seconds_each=dict(places.seconds))
        conn.send_bytes(pack_result(result))


def _none_ran(packed: PackedChunk, exc: BaseException, unloadable: bool = False) -> ChunkResult:
    """Every task of ``packed`` failed with ``exc`` before it could start."""
    info = ErrorInfo.from_exception(exc, dumps)
    nothing = [None] * len(packed.indices)
    errors = dict.fromkeys(packed.indices, info)
    return ChunkResult(packed.indices, nothing, errors, unloadable=unloadable)


def _load_function(fn_bytes: bytes) -> tuple[Any, BaseException | None]:
    try:
        return loads(fn_bytes), None
    except BaseException as exc:  # noqa: BLE001 - reported as every task's error
        return None, exc


def _run_packed(fn, problem, packed: PackedChunk, seed, mark, report=None) -> ChunkResult:
    """Run the chunk's tasks; a chunk whose inputs cannot be read is ``unloadable`` (the
    worker dead-letters its message with the reason: no task ran)."""
    if problem is not None:
        error = SerializationError(f"the job's code cannot be loaded here: {problem!r}")
        return _none_ran(packed, error)
    try:
        items = loads(packed.inputs)
        if not isinstance(items, list) or len(items) != packed.count:
            count = len(items) if isinstance(items, list) else type(items).__name__
            raise SerializationError(f"the message has {count} inputs for {packed.count} tasks")
        chosen = [items[p] for p in packed.positions]
    except BaseException as exc:  # noqa: BLE001 - no task can run: the message is bad
        return _none_ran(packed, exc, unloadable=True)
    chunk = Chunk(0, chosen, packed.star, explicit=packed.indices)
    return run_chunk(fn, chunk, seed, mark=mark, on_progress=report)


class _Capture:
    """Send fds 1 and 2 to a chunk's log file while it runs; note each task's span."""

    def __init__(self, path: str, marks, starts, offsets, position: int) -> None:
        self.path, self.position = path, position
        self.marks, self.starts, self.offsets = marks, starts, offsets
        self.spans: list[tuple[int, int]] = []
        self.fractions: Any = None  # the slots' shared task progress (cf.task_progress)

    def progressed(self, share: float) -> None:
        """The running task says it is ``share`` done."""
        set_share(self.fractions, self.marks, self.position, share)

    def run(self, fn, problem, packed: PackedChunk, seed: int | None) -> LoggedResult:
        _flush()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        saved = os.dup(1), os.dup(2)

        def mark(index: int) -> None:
            # Each task starts writing to the log, whatever the one before did to fds 1
            # and 2 or to sys.stdout and sys.stderr (closed them, replaced them).
            _flush()
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            ours = sys.stdout is sys.__stdout__ and sys.stderr is sys.__stderr__
            if not ours or sys.stdout.closed or sys.stderr.closed:
                _standard_streams()
            self.mark(index)

        try:
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            report = self.progressed if self.fractions is not None else None
            result = _run_packed(fn, problem, packed, seed, mark, report)
        finally:
            _flush()
            end = os.lseek(fd, 0, os.SEEK_CUR)  # where fds 1 and 2 wrote to, if still open
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for kept in (*saved, fd):
                os.close(kept)
        if end == 0:
            os.unlink(self.path)
        return LoggedResult(
            result.indices,
            result.values,
            result.errors,
            result.seconds,
            unloadable=result.unloadable,
            output=self._output(end),
        )

    def mark(self, index: int) -> None:
        _flush()
        offset = os.lseek(1, 0, os.SEEK_CUR)
        self.offsets[self.position] = offset
        self.starts[self.position] = time.monotonic()
        self.marks[self.position] = index
        self.spans.append((index, offset))

    def _output(self, end: int) -> dict[int, tuple[int, int]]:
        if not self.spans:  # no task started (its inputs could not be read)
            return {}
        stops = [offset for _, offset in self.spans[1:]] + [end]
        return {
            index: (start, stop)
            for (index, start), stop in zip(self.spans, stops, strict=True)
            if stop > start
        }


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: nothing to keep
            pass


def _standard_streams() -> None:
    """``sys.stdout`` and ``sys.stderr`` write to fds 1 and 2 (not to whatever the parent
    had put there, such as a notebook's or pytest's capture), a line at a time, so that a
    task's output lands in its chunk's log and a crash loses none of its printed lines."""
    _flush()
    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = open(fd, "w", buffering=1, errors="backslashreplace", closefd=False)  # noqa: SIM115
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _die_with_parent(worker_pid: int | None) -> None:
    """Linux: get SIGKILL when the worker process dies, so no task runs on orphaned.

    ``worker_pid`` is the worker's pid, taken before the fork: if the slot's parent is no
    longer that process, the worker died before ``prctl`` took effect. (Comparing with 1
    would be wrong where the worker itself is PID 1, as in a container, and where an
    orphan goes to a subreaper instead of PID 1.) None: no check (a forkserver's child).
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if worker_pid is not None and os.getppid() != worker_pid:  # it died before prctl
        os._exit(1)
