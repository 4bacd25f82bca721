"""Worker start-up that stays safe when the caller runs threads: a zygote forks the workers.

``fork()`` copies only the thread that calls it: a lock that another thread held at that
instant (in an import, in logging, in the caller's own code) stays locked for ever in the
child, which may then deadlock (Python 3.12+ warns of it). So a pool never forks its
workers from the caller's process once threads may run there. When the pool starts while
the caller is single-threaded (``cf.map`` from a script, an executor's first submit), it
forks a *zygote*: a copy of the caller (its imports warm, its state as at that moment)
that never starts a thread; every worker, at the start and whenever one is replaced, is
forked from the zygote on request. When the caller already runs threads (a notebook's
kernel, another executor, a server), the zygote is a fresh interpreter instead (fork and
exec at once, safe at any time) that gets the pool by pickle.

Nothing outlives the caller: the zygote ends, killing its workers, when the pool closes its
control socket or the caller dies (EOF); on Linux each worker also gets SIGKILL when the
zygote dies (``PR_SET_PDEATHSIG``), so a SIGKILLed caller leaves no process behind.
"""

from __future__ import annotations

import contextlib
import mmap
import multiprocessing.process as mp_process
import multiprocessing.util as mp_util
import os
import pickle
import signal
import socket
import struct
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import subprocess

__all__ = [
    "Child",
    "SharedArray",
    "Zygote",
    "close_in_children",
    "die_with_parent",
    "main",
    "fork_here",
    "load_prctl",
    "single_threaded",
]

_REQUEST = struct.Struct("!cq")  # b"S" (start a worker at this position) or b"K" (kill pid)
_PID = struct.Struct("!q")
_CODE = struct.Struct("!i")
_caller_only: weakref.WeakSet[Any] = weakref.WeakSet()
_prctl: Any = None  # prctl(2), once loaded


def close_in_children(obj: Any) -> None:
    """Close ``obj`` (a connection or socket of this process) in every process forked from
    this one, so that its peer sees EOF when this process dies."""
    _caller_only.add(obj)


def _close_caller_only() -> None:
    for obj in list(_caller_only):
        with contextlib.suppress(OSError):
            obj.close()
    _caller_only.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_caller_only)


class SharedArray:
    """A small array of numbers in shared memory, writable from the caller and its workers.

    It lives in a memory file, so a zygote started fresh maps it too (it pickles as its
    descriptor, which the zygote is given).
    """

    def __init__(self, typecode: str, size: int, fd: int | None = None) -> None:
        self.typecode, self.size = typecode, size
        nbytes = max(1, size) * struct.calcsize(typecode)
        if fd is None:
            fd = _memory_file(nbytes)
            weakref.finalize(self, os.close, fd).atexit = False
        self.fd = fd
        self.view = memoryview(mmap.mmap(fd, nbytes)).cast("B").cast(typecode)
        """The numbers themselves (indexing it directly is the fastest way in)."""

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Any:
        return self.view[index]

    def __setitem__(self, index: int, value: Any) -> None:
        self.view[index] = value

    def __reduce__(self) -> tuple:
        return SharedArray, (self.typecode, self.size, self.fd)


def _memory_file(nbytes: int) -> int:
    try:
        fd = os.memfd_create("cheerful-shared", os.MFD_CLOEXEC)
    except (AttributeError, OSError):  # not Linux, or forbidden: an unlinked temp file
        import tempfile

        fd, path = tempfile.mkstemp(prefix="cheerful-shared-")
        os.unlink(path)
    os.ftruncate(fd, nbytes)
    return fd


class Child:
    """A worker forked by a zygote: the part of ``multiprocessing.Process`` a pool uses.

    ``sentinel`` becomes readable when the worker has ended; ``exitcode`` is then its
    code (negative: the signal that killed it), or None when the zygote itself died.
    """

    def __init__(self, zygote: Zygote, pid: int, status: int, name: str) -> None:
        self.pid, self.sentinel, self.name = pid, status, name
        self._zygote = zygote
        self._ended = False
        self._code: int | None = None
        weakref.finalize(self, os.close, status).atexit = False  # the pool's own exit
        # handler still needs it

    @property
    def exitcode(self) -> int | None:
        """The exit code once the worker ended, else None."""
        self._poll(0)
        return self._code

    def is_alive(self) -> bool:
        """True until the worker has ended."""
        self._poll(0)
        return not self._ended

    def join(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` seconds (None: for ever) for the worker to end."""
        self._poll(timeout)

    def kill(self) -> None:
        """SIGKILL the worker (the zygote, its parent, sends it)."""
        if self.is_alive():
            self._zygote.kill(self.pid)

    def _poll(self, timeout: float | None) -> None:
        if self._ended or not wait([self.sentinel], timeout):
            return
        data = os.read(self.sentinel, _CODE.size)
        self._ended = True
        self._code = _CODE.unpack(data)[0] if len(data) == _CODE.size else None


class Zygote:
    """The caller's end of a zygote: :meth:`fork` a worker, :meth:`kill` one, :meth:`close`."""

    def __init__(self, control: socket.socket, pid: int, proc: subprocess.Popen | None) -> None:
        self.pid = pid
        self._control, self._proc = control, proc
        self._lock = threading.Lock()
        close_in_children(control)

    @classmethod
    def start(cls, pool: Any) -> Zygote | None:
        """A zygote for ``pool``: forked if this process runs no other thread, else a fresh
        interpreter; None when neither can be (the pool cannot be pickled)."""
        if threading.active_count() == 1:
            zygote = _fork(pool)
            if zygote is not None:
                return zygote
        return _spawn(pool)

    def fork(self, conn: Connection, position: int) -> Child:
        """A new worker that runs ``pool._child_main(conn, position, [])``; ``conn`` is
        closed here once the worker has it. Raises OSError when the zygote is gone."""
        status_r, status_w = os.pipe()
        try:
            with self._lock:
                request = [_REQUEST.pack(b"S", position)]
                socket.send_fds(self._control, request, [conn.fileno(), status_w])
                reply = self._control.recv(_PID.size)
            if len(reply) != _PID.size:
                raise ConnectionResetError("the zygote is gone")
        except BaseException:
            os.close(status_r)
            raise
        finally:
            os.close(status_w)
        conn.close()
        return Child(self, _PID.unpack(reply)[0], status_r, f"cheerful-worker-{position}")

    def kill(self, pid: int) -> None:
        """Ask the zygote to SIGKILL its worker ``pid`` (nothing if it is gone)."""
        with self._lock, contextlib.suppress(OSError):
            self._control.send(_REQUEST.pack(b"K", pid))

    def close(self) -> None:
        """End the zygote (it kills the workers still running) and wait for it."""
        with contextlib.suppress(OSError):
            self._control.close()
        deadline = time.monotonic() + 10
        while not self._reaped() and time.monotonic() < deadline:
            time.sleep(0.005)
        if not self._reaped():
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
            while not self._reaped():
                time.sleep(0.005)

    def _reaped(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is not None
        try:
            return os.waitpid(self.pid, os.WNOHANG)[0] != 0
        except ChildProcessError:  # reaped already (by this or by someone else)
            return True


def _fork(pool: Any) -> Zygote | None:
    """Fork the zygote from this single-threaded process; None if a thread we could not
    see (a native one) ran at the fork after all, so that copy is not to be trusted."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    caller = os.getpid()
    load_prctl()  # the zygote and its workers inherit it
    forked: list[int] = []
    safe = fork_here(lambda: forked.append(os.fork()))
    pid = forked[0]
    if pid == 0:
        try:
            ours.close()
            for obj in pool._caller_only():
                with contextlib.suppress(OSError):
                    obj.close()
            _serve(theirs, pool._child_main, caller)
        finally:
            os._exit(0)
    theirs.close()
    if not safe:
        ours.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        return None
    return Zygote(ours, pid, None)


def _spawn(pool: Any) -> Zygote | None:
    """Start the zygote as a fresh interpreter and give it the pool by pickle."""
    import subprocess  # only here: a cold map forks its workers without it

    from .serialize import dumps

    state = pool._zygote_state()
    try:
        spec = dumps((sys.path, bytes(mp_process.current_process().authkey))) + dumps(state)
    except Exception:  # something of the pool cannot travel (e.g. an open client)
        return None
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    shared = [v.fd for v in state[1].values() if isinstance(v, SharedArray)]
    parent = os.getpid() if threading.current_thread() is threading.main_thread() else 0
    code = "from cheerful.zygote import main; main()"
    argv = [sys.executable, *subprocess._args_from_interpreter_flags(), "-c", code]
    try:
        proc = subprocess.Popen(
            [*argv, str(theirs.fileno()), str(parent)],
            stdin=subprocess.PIPE,
            pass_fds=[theirs.fileno(), *shared],
        )
    finally:
        theirs.close()
    with contextlib.suppress(OSError):
        proc.stdin.write(spec)
        proc.stdin.close()
    return Zygote(ours, proc.pid, proc)


def main() -> None:
    """A fresh zygote: read the pool from standard input, then serve (see :func:`_spawn`)."""
    control = socket.socket(fileno=int(sys.argv[1]))
    parent = int(sys.argv[2]) or None
    with os.fdopen(0, "rb", closefd=False) as spec:
        path, authkey = pickle.load(spec)
        sys.path[:] = path
        cls, state = pickle.load(spec)
    mp_process.current_process().authkey = authkey
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    pool = cls.__new__(cls)
    pool.__dict__.update(state)
    try:
        _serve(control, pool._child_main, parent)
    finally:
        os._exit(0)


# --- inside the zygote ------------------------------------------------------------------


def _serve(control: socket.socket, make: Callable, parent: int | None) -> None:
    """Fork a worker per request until EOF (the caller closed the pool, or died); then
    kill and reap every worker. ``parent``: the caller, to die with as well (Linux)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle
    children: dict[int, int] = {}  # pid -> the write end of its status pipe
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # handlers, so that the fd is written
    ended: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _: ended.append(signum))
    # SIGTERM, not SIGKILL, when the caller dies: the workers must be killed first. (EOF on
    # the control socket tells at once too, unless the caller's end leaked elsewhere.)
    if parent is not None and not die_with_parent(parent, signal.SIGTERM):
        return
    try:
        while not ended:
            ready = wait([control, wake_r])
            if wake_r in ready:
                with contextlib.suppress(OSError):
                    os.read(wake_r, 4096)
                _reap(children, os.WNOHANG)
            if control in ready and not _answer(control, make, children, (wake_r, wake_w)):
                return
    finally:
        for pid in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        _reap(children, 0)


def _answer(control: socket.socket, make: Callable, children: dict, private: tuple) -> bool:
    """Carry out one request; False at EOF (the caller closed the pool, or died)."""
    try:
        data, fds, _, _ = socket.recv_fds(control, _REQUEST.size, 2)
    except OSError:
        return False
    if len(data) != _REQUEST.size:
        for fd in fds:
            os.close(fd)
        return False
    kind, arg = _REQUEST.unpack(data)
    if kind == b"K":
        if arg in children:
            os.kill(arg, signal.SIGKILL)
        return True
    conn_fd, status_w = fds
    conn = Connection(conn_fd)
    try:  # here, so that the worker's parent is this process when it asks (os.getpid())
        job: tuple | str = make(conn, arg, [])
    except BaseException:  # noqa: BLE001 - the worker reports it and exits
        import traceback

        job = traceback.format_exc()
    zygote = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            for fd in (*private, *children.values(), status_w):
                os.close(fd)
            control.close()
            if not die_with_parent(zygote):
                os._exit(1)
            code = _run(job, arg)
        finally:
            os._exit(code)
    conn.close()
    children[pid] = status_w
    control.send(_PID.pack(pid))
    return True


def _reap(children: dict[int, int], flags: int) -> None:
    """Collect ended workers and write each one's exit code to its status pipe."""
    while children:
        try:
            pid, status = os.waitpid(-1, flags)
        except ChildProcessError:
            return
        if pid == 0:
            return
        fd = children.pop(pid, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.write(fd, _CODE.pack(os.waitstatus_to_exitcode(status)))
            os.close(fd)


def _run(job: tuple | str, position: int) -> int:
    """A new worker: reset what ``multiprocessing`` resets in its children, then run
    ``target(*args)`` (``job`` is that pair, or the traceback of the failure to make it)."""
    mp_process._children.clear()  # the caller's processes are not this one's children
    mp_util._close_stdin()
    mp_util._finalizer_registry.clear()
    mp_util._run_after_forkers()
    if isinstance(job, str):
        sys.stderr.write(f"Process cheerful-worker-{position}:\n{job}")
        return 1
    try:
        target, args = job
        target(*args)
        return 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        sys.stderr.write(f"{exc.code}\n")
        return 1
    except BaseException:  # noqa: BLE001 - reported like multiprocessing does
        import traceback

        sys.stderr.write(f"Process cheerful-worker-{position}:\n")
        traceback.print_exc()
        return 1
    finally:
        mp_util._flush_std_streams()


def single_threaded() -> bool:
    """True when this process runs no other thread that Python knows of (a fork now is
    safe, unless a native thread runs: :func:`fork_here` checks that after the fork)."""
    return threading.active_count() == 1


def fork_here(start: Callable[[], Any]) -> bool:
    """Call ``start`` (which forks), and say whether the fork was safe: no other thread ran
    in this process then (a native one Python does not list, or one still ending), as
    Python 3.12+ checks it; that warning is taken here, not shown. Call it only when
    :func:`single_threaded`."""
    mp_util._flush_std_streams()  # else the child's copies of the buffers print again
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeprecationWarning)
        start()
    return not caught and _thread_count() == 1


def load_prctl() -> None:
    """Load prctl(2) now (Linux), so that processes forked from here arm
    ``PR_SET_PDEATHSIG`` in microseconds (through ``_ctypes``, well under a millisecond to
    import; ``ctypes`` itself takes a few)."""
    global _prctl
    if _prctl is not None or not sys.platform.startswith("linux"):
        return
    try:
        import _ctypes

        address = _ctypes.dlsym(_ctypes.dlopen(None), "prctl")
        _prctl = lambda *args: _ctypes.call_function(address, args)  # noqa: E731
    except (ImportError, AttributeError, OSError):
        try:
            import ctypes

            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (ImportError, AttributeError, OSError):
            _prctl = False


def die_with_parent(parent: int, signum: int = signal.SIGKILL) -> bool:
    """Linux: get ``signum`` when the parent process dies (``PR_SET_PDEATHSIG``); False if
    it already did (the parent is no longer ``parent``). Elsewhere, nothing (True)."""
    if not sys.platform.startswith("linux"):
        return True
    load_prctl()
    if _prctl:
        _prctl(1, signum)  # PR_SET_PDEATHSIG
    return os.getppid() == parent


def _thread_count() -> int:
    """Threads of this process as the OS counts them (what Python 3.12+ checks at fork)."""
    try:
        return len(os.listdir("/proc/self/task"))  # faster than /proc/self/stat after a fork
    except OSError:
        return threading.active_count()
