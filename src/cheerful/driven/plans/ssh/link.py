"""The caller's end of one SSH host: its ssh process, the handshake and the frames.

One ``ssh`` process per host carries everything (one connection, one handshake): the
bootstrap, the code when the host's cache lacks it, the hello, then chunks and results.
ssh runs in a session of its own, so a Ctrl-C at the terminal reaches the caller only
(which then abandons the running chunks) and not the connection. What the host prints
on standard error (tasks' output, ssh's own messages) is shown with the host's name once
the agent is up, and kept for the error message if the connection fails before.
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import subprocess
import sys
import threading
import time
import weakref
from multiprocessing.connection import Connection

from cheerful.errors import BrokenPlan, ConfigError, HostUnreachable
from cheerful.pool import Crashed, Done, Work
from cheerful.serialize import dumps, loads

from . import wire
from .boot import MARK
from .bundle import Bundle

__all__ = ["Link"]

_STATUS_LIMIT = 64 * 1024  # bytes a login script may print before the bootstrap answers
_links: weakref.WeakSet[Link] = weakref.WeakSet()


class Link:
    """One host: start it with :meth:`start`, then :meth:`handshake`; then frames."""

    def __init__(self, label: str, argv: list[str], python: str) -> None:
        self.label, self.argv, self.python = label, argv, python
        self.inflight: dict[int, Work] = {}
        self.share = 0.0  # how much of its running tasks is done, as the agent last said
        self.fn_key = ""  # the function the agent has
        self.info: dict = {}
        self.cache = ""  # "warm" or "cold": whether the code had to be shipped
        self.lost = ""  # why the host is gone, once it is
        self.lock = threading.Lock()  # one writer at a time (the heartbeat pings)
        self._stderr: collections.deque[str] = collections.deque(maxlen=40)
        self._show = False

    # --- start ----------------------------------------------------------------------------

    def start(self) -> None:
        """Run ``ssh`` (it connects in the background)."""
        to_agent, self._stdin = os.pipe()
        self._stdout, from_agent = os.pipe()
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=to_agent,
                stdout=from_agent,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise ConfigError(f"cannot run the ssh client ({self.argv[0]}): {exc}") from exc
        finally:
            os.close(to_agent)
            os.close(from_agent)
        self.inbox = Connection(self._stdout, writable=False)
        self.outbox = Connection(self._stdin, readable=False)
        self.owner = os.getpid()
        _links.add(self)
        self._pump = threading.Thread(target=self._read_stderr, daemon=True)
        self._pump.start()

    def handshake(self, code: Bundle, hello: wire.Hello, timeout: float) -> None:
        """Boot the host: bootstrap, code if its cache lacks it, hello; wait for ready."""
        try:
            self._write(code.boot)
            self.cache, version = self._status(timeout)
            if self.cache == "old":
                raise ConfigError(
                    f"host {self.label} has Python {version} as {self.python!r}; cheerful needs "
                    "3.10 or newer there: install one, or pass python='/path/to/python3.x'"
                )
            if self.cache == "cold":
                self._write(b"%016d" % len(code.zip) + code.zip)
            self.outbox.send_bytes(wire.HELLO + dumps(hello))
            frame = self.inbox.recv_bytes()
        except (OSError, EOFError):
            raise self._failure() from None
        if frame[:1] == wire.SETUP_FAILED:
            command, status, output = loads(frame[1:])
            raise ConfigError(
                f"the setup command {command!r} failed on host {self.label} with exit code "
                f"{status}; its output:\n{_tail(output)}"
            )
        self.info = loads(frame[1:])
        self._show = True

    def _status(self, timeout: float) -> tuple[str, str]:
        """The bootstrap's answer (``warm``/``cold``/``old``, Python version)."""
        line, seen, deadline = b"", 0, time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._stdout], [], [], left)[0]:
                raise HostUnreachable(f"host {self.label} did not answer within {timeout:g} s")
            byte = os.read(self._stdout, 1)
            if not byte:
                raise EOFError
            seen += 1
            if byte != b"\n":
                line += byte
            elif line.startswith(MARK.encode()):
                _, word, version = line.decode().split()
                return word, version
            else:
                line = b""  # a login script's chatter
            if seen > _STATUS_LIMIT:
                raise BrokenPlan(f"host {self.label} printed too much before cheerful started")

    def _failure(self) -> Exception:
        """The error that explains why the host could not be started."""
        code = self.wait_exit(5.0)
        said = self.last_words() or "(nothing)"
        where = f"host {self.label}"
        if code == 255:
            return HostUnreachable(f"cannot reach {where}: ssh says: {said}{_hint(said)}")
        if code == 127:
            return ConfigError(
                f"{self.python!r} was not found on {where} ({said}): install Python 3.10 or "
                "newer there, or pass python='/path/to/python3'"
            )
        return BrokenPlan(f"cheerful could not start on {where} (exit code {code}): {said}")

    # --- running ------------------------------------------------------------------------

    def free(self, per_host: int) -> int:
        """Workers of this host without a chunk (0 once it is lost)."""
        if self.lost or self.proc.poll() is not None:
            return 0
        return per_host - len(self.inflight)

    def send_work(self, work: Work, header: bytes, payload: bytes, buffers: list) -> None:
        """Send a chunk (raises OSError when the connection is gone)."""
        self.inflight[work.work_id] = work
        with self.lock:
            self.outbox.send_bytes(wire.WORK + header)
            self.outbox.send_bytes(payload)
            for buf in buffers:
                self.outbox.send_bytes(buf)
        self.fn_key = work.fn_key

    def receive(self) -> Done | Crashed | None:
        """The next event from the agent (None for one of an abandoned chunk, or progress).

        Raises EOFError or OSError when the connection is gone.
        """
        frame = self.inbox.recv_bytes()
        kind = frame[:1]
        if kind == wire.PROGRESS:
            (self.share,) = wire.SHARE.unpack_from(frame, 1)
            return None
        if kind == wire.DONE:
            (work_id,) = wire.ID.unpack_from(frame, 1)
            if self.inflight.pop(work_id, None) is None:
                return None
            return Done(work_id, loads(memoryview(frame)[1 + wire.ID.size :]))
        work_id, index, reason, exitcode, signal, in_one_go = loads(frame[1:])
        if self.inflight.pop(work_id, None) is None:
            return None
        reason = f"{reason} (on host {self.label})"
        return Crashed(work_id, index, reason, exitcode, signal, in_one_go)

    def control(self, kind: bytes, *, block: bool = True) -> bool:
        """Send a one-byte frame (ping, abandon, quit); False when it could not be sent."""
        if self.lost or not self.lock.acquire(blocking=block):
            return False
        try:
            self.outbox.send_bytes(kind)
            return True
        except OSError:
            return False
        finally:
            self.lock.release()

    def lose(self) -> list[Crashed]:
        """The host is gone: why, and a crash for each chunk it was running."""
        if not self.lost:
            code, said = self.wait_exit(1.0), self.last_words()
            if code == 255:
                why = f"ssh says: {said}" if said else "ssh ended (exit code 255)"
            else:  # the connection is fine: what ran there ended
                why = f"its agent ended (exit code {code})" + (f": {said}" if said else "")
            self.lost = f"host {self.label} was lost: {why}"
            self.stop()
        crashed = [Crashed(w, None, self.lost) for w in self.inflight]
        self.inflight.clear()
        return crashed

    # --- end ----------------------------------------------------------------------------

    def quit(self) -> None:
        """Ask the agent to stop everything, and close our end (EOF on the host)."""
        if self.owner != os.getpid():
            return  # a forked copy: the process that started ssh owns it
        self.control(wire.QUIT, block=False)
        for conn in (self.outbox, self.inbox):
            if not conn.closed:
                conn.close()

    def stop(self, grace: float = 0.0) -> None:
        """Wait up to ``grace`` seconds for ssh to end on its own, then end it."""
        if self.owner != os.getpid():
            return
        self.quit()
        if self.wait_exit(grace) is None:
            self.proc.kill()
            self.proc.wait()
        self._pump.join(timeout=2)

    def wait_exit(self, timeout: float) -> int | None:
        """ssh's exit code, waiting up to ``timeout`` seconds; None if it still runs."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def last_words(self) -> str:
        """The last line ssh or the host wrote on standard error ("" if none), for messages."""
        self._pump.join(timeout=1)
        lines = [line for line in self._stderr if line.strip()]
        return lines[-1].strip() if lines else ""

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._stdin, view) :]

    def _read_stderr(self) -> None:
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode(errors="replace")
            self._stderr.append(line)
            if self._show:
                with contextlib.suppress(OSError, ValueError):  # stderr closed at exit
                    sys.stderr.write(f"[{self.label}] {line}")
        self.proc.stderr.close()


def _drop_links_in_child() -> None:
    """A forked process (a local worker) closes its copies of every host's pipes: it must
    never write to them, and the host must see EOF when the process that owns it dies."""
    for link in list(_links):
        link.lost = link.lost or "inherited by a forked process"
        for conn in (link.outbox, link.inbox):
            if not conn.closed:
                conn.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_links_in_child)


def _hint(said: str) -> str:
    lowered = said.lower()
    for words, hint in _HINTS:
        if any(w in lowered for w in words):
            return f" ({hint})"
    return ""


_HINTS = [
    (("permission denied",), "check user= and key=: does `ssh -i KEY user@host` work?"),
    (("host key verification", "remote host identification"), "the host's key is not the "
     "one in known_hosts: check it, then remove the old entry with ssh-keygen -R HOST"),
    (("could not resolve",), "check the host name"),
    (("connection refused",), "is sshd running on that port?"),
    (("no route", "timed out", "unreachable"), "is the host up and reachable from here?"),
]  # fmt: skip


def _tail(text: str, lines: int = 30) -> str:
    kept = text.rstrip().splitlines()[-lines:]
    return "\n".join(f"  | {line}" for line in kept) or "  | (no output)"
