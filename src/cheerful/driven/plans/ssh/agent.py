"""The host side of the ssh plan: one agent per host and pool, started by :mod:`.boot`.

The agent owns a local process pool, the very workers of ``cf.processes()``: each marks
the task it is running, so a task that kills its worker is blamed exactly as it is
locally, and the worker is replaced. The agent relays chunks from the caller to idle
workers and their packed results back without unpickling either (see :mod:`.wire`).

A reader thread takes frames off standard input, so the agent never stops reading while it
writes (caller and agent could otherwise each wait for the other to read). The agent stops
on ``Q``, on EOF (the caller or its ssh went away), or after ``Hello.silence`` seconds
without a frame (the connection was cut without the host noticing); it then kills its
workers and everything they started, so nothing is left running on the host.
"""

from __future__ import annotations

import collections
import importlib
import os
import signal
import site
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection

from cheerful.pool import Done, Work, owned_cores
from cheerful.processpool import IDLE, ProcessPool
from cheerful.serialize import dumps, loads
from cheerful.task import Chunk

from . import wire

__all__ = ["main"]

_TICK = 1.0  # seconds between checks that the caller is still there
_NO_CHUNK = Chunk(0, ())


def main() -> int:
    """Serve the caller on standard input and output until it quits or goes away."""
    inbox, outbox = _take_stdio()
    hello: wire.Hello = loads(_read_frame(inbox)[1:])
    os.environ["CHEERFUL_HOST"] = hello.host
    if hello.live_output:  # read by each worker: its tasks print live, as the caller asked
        os.environ["CHEERFUL_OUTPUT"] = "live"
    failed = _run_setup(hello.setup)
    if failed:
        outbox.send_bytes(wire.SETUP_FAILED + dumps(failed))
        return 4
    pool = RelayPool(hello.workers, max(1, owned_cores() // hello.workers), [_Fd(inbox), outbox])
    pool.ready_for_threads()  # the reader thread starts below: workers replaced later come
    # from a zygote forked now
    info = {
        "python": ".".join(map(str, sys.version_info[:3])),
        "cores": owned_cores(),
        "pid": os.getpid(),
        "hostname": socket.gethostname(),
    }
    try:
        outbox.send_bytes(wire.READY + dumps(info))
        _Agent(inbox, outbox, pool, hello.silence).run()
    except OSError:  # the caller's end is gone
        pass
    finally:
        pool.close(kill=True)
        _end_session_group()
    return 0


def _take_stdio() -> tuple[int, Connection]:
    """The frames' own descriptors; what tasks print goes to standard error instead."""
    inbox, out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    sys.stdout.reconfigure(line_buffering=True)  # a task's print shows up as it happens
    return inbox, Connection(out, readable=False)


def _run_setup(commands: tuple[str, ...]) -> tuple[str, int, str] | None:
    """Run the setup commands in order; the first failure's (command, code, output)."""
    for command in commands:
        done = subprocess.run(
            command,
            shell=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        if done.returncode != 0:
            return command, done.returncode, done.stdout.decode(errors="replace")
    if commands:  # e.g. `pip install --user` made the user site directory just now
        user_site = site.getusersitepackages()
        if os.path.isdir(user_site) and user_site not in sys.path:
            site.addsitedir(user_site)
        importlib.invalidate_caches()
    return None


class RelayPool(ProcessPool):
    """The local workers, fed with chunks as they came over the wire."""

    def __init__(self, workers: int, cores_each: int, private: list) -> None:
        self._private = private  # the agent's own frame descriptors: workers close them
        self._function: tuple[str, bytes] = ("", b"")
        super().__init__(workers, cores_each, "fork")

    def _child_main(self, child, position, inherited):
        return super()._child_main(child, position, [*inherited, *self._private])

    def _caller_only(self) -> list:
        return self._private

    def relay(self, header: tuple, payload: bytes, buffers: list[bytes]) -> None:
        """Give a chunk (a ``W`` frame's header, payload and buffers) to an idle worker."""
        work_id, fn_key, fn_bytes, *rest = header
        if fn_bytes:
            self._function = (fn_key, fn_bytes)
        slot = self._pick(fn_key)
        fresh = slot.fn_key != fn_key and self._function[0] == fn_key
        header = (work_id, fn_key, self._function[1] if fresh else b"", *rest)
        self._marks[slot.position] = IDLE
        slot.work, slot.fn_key = Work(work_id, fn_key, b"", _NO_CHUNK), fn_key
        try:
            slot.conn.send_bytes(dumps(header))
            slot.conn.send_bytes(payload)
            for buf in buffers:
                slot.conn.send_bytes(buf)
        except OSError:  # the worker died before it read its chunk: wait() reports it
            slot.fn_key = ""

    def _collect(self, slot):
        work = slot.work
        try:
            data = slot.conn.recv_bytes()
        except (EOFError, OSError):
            return self._crashed(slot, work)
        slot.work = None
        return Done(work.work_id, data)  # the packed result, passed on as it is


class _Agent:
    """The agent's loop: relay events out, messages in, until the caller is done."""

    def __init__(self, inbox: int, outbox: Connection, pool: RelayPool, silence: float):
        self.outbox, self.pool, self.silence = outbox, pool, silence
        self.heard = time.monotonic()
        self.messages: collections.deque = collections.deque()
        self.queued: collections.deque = collections.deque()
        self.wake_r, self.wake_w = os.pipe()
        pool._private += [_Fd(self.wake_r), _Fd(self.wake_w)]
        threading.Thread(target=self._read, args=(inbox,), daemon=True).start()

    def run(self) -> None:
        """Serve until the caller quits or is gone."""
        share = 0.0
        while True:
            for event in self.pool.wait(_TICK, wakeup=self.wake_r):
                self.outbox.send_bytes(_encode(event))
            if (now := self.pool.running_fraction()) != share:
                share = now
                self.outbox.send_bytes(wire.PROGRESS + wire.SHARE.pack(share))
            _drain(self.wake_r)
            while self.messages:
                kind, *body = self.messages.popleft()
                if kind == wire.QUIT:
                    return
                if kind == wire.ABANDON:
                    self.queued.clear()
                    self.pool.abandon()
                elif kind == wire.WORK:
                    self.queued.append(body)
            while self.queued and self.pool.idle():
                self.pool.relay(*self.queued.popleft())
            if time.monotonic() - self.heard > self.silence:
                return

    def _read(self, inbox: int) -> None:
        try:
            while True:
                frame = _read_frame(inbox, self._alive)
                kind = frame[:1]
                if kind == wire.WORK:
                    header = loads(memoryview(frame)[1:])
                    payload = _read_frame(inbox, self._alive)
                    buffers = [_read_frame(inbox, self._alive) for _ in header[-1]]
                    self._post((kind, header, payload, buffers))
                elif kind != wire.PING:
                    self._post((kind,))
        except (EOFError, OSError):
            self._post((wire.QUIT,))

    def _alive(self) -> None:
        self.heard = time.monotonic()

    def _post(self, message: tuple) -> None:
        self.messages.append(message)
        os.write(self.wake_w, b"x")


class _Fd:
    """A bare descriptor that a new worker closes (as it closes its siblings' pipes)."""

    def __init__(self, fd: int) -> None:
        self.fd, self.closed = fd, False

    def close(self) -> None:
        self.closed = True
        os.close(self.fd)


def _read_frame(fd: int, alive=None) -> bytearray:
    """One :mod:`multiprocessing.connection` frame from ``fd``, calling ``alive`` as bytes come."""
    (size,) = wire.SIZE.unpack(_read_exact(fd, 4, alive))
    if size == -1:
        (size,) = wire.ID.unpack(_read_exact(fd, 8, alive))
    return _read_exact(fd, size, alive)


def _read_exact(fd: int, size: int, alive) -> bytearray:
    buf = bytearray(size)
    view, got = memoryview(buf), 0
    while got < size:
        n = os.readv(fd, [view[got:]])
        if n == 0:
            raise EOFError
        got += n
        if alive is not None:
            alive()
    return buf


def _encode(event) -> bytes:
    if isinstance(event, Done):
        return wire.DONE + wire.ID.pack(event.work_id) + event.result
    fields = (event.work_id, event.index, event.reason, event.exitcode, event.signal, event.in_one_go)
    return wire.CRASHED + dumps(fields)


def _drain(fd: int) -> None:
    os.set_blocking(fd, False)
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _end_session_group() -> None:
    """Stop whatever the workers started: the process group sshd made for this command."""
    if os.getpgrp() != os.getsid(0):
        return  # not a group of our own: leave it alone
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.killpg(os.getpgrp(), signal.SIGTERM)
