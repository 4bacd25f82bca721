"""The ssh plan's pool: chunks go to the host with the most idle workers.

Opening connects to every host at once and fails if any cannot be started
(:class:`~cheerful.errors.HostUnreachable` for ssh's own failures, naming the host and
quoting ssh). A host lost mid-run (its ssh ends: cut off, killed, rebooted; ssh notices a
silent cut by ``ServerAliveInterval``) reports each of its chunks as crashed before its
first task, so the scheduler runs them again on the other hosts; with no host left,
:meth:`SshPool.wait` raises HostUnreachable and the pool is not kept. A heartbeat thread
pings every host, whose agent stops by itself when the pings stop.
"""

from __future__ import annotations

import threading
import time
import warnings
import weakref
from multiprocessing.connection import wait as wait_for

from cheerful.byvalue import by_value, local_modules
from cheerful.errors import HostUnreachable, SerializationError
from cheerful.globals_guard import guard
from cheerful.pool import Crashed, Done, Pool, Work
from cheerful.processpool import work_header
from cheerful.serialize import dumps, dumps_oob, size_of
from cheerful.taskio import live_default

from . import wire
from .bundle import bundle
from .hosts import SshSettings
from .link import Link

__all__ = ["SshPool"]

_set_up: set[tuple] = set()  # (host, setup) pairs whose setup ran in this process
_warned: set[str] = set()


class SshPool(Pool):
    """Agents on every host of an ssh plan (:class:`~.hosts.SshSettings`)."""

    def __init__(self, plan: SshSettings) -> None:
        self.per_host = plan.workers_per_host
        self._events: list[Done | Crashed] = []
        self._fn: tuple[str, bytes] = ("", b"")  # the latest function, pickled for hosts
        code = bundle()
        command = plan.remote_command(code.tag, len(code.boot))
        self._links = [Link(h.label, plan.ssh_argv(h, command), plan.python) for h in plan.hosts]
        _open(plan, self._links, code)
        self.started = {li.label: {**li.info, "cache": li.cache} for li in self._links}
        """Per host: its Python, cores, agent pid and whether the code was shipped ("cold")."""
        interval, count = plan.alive()
        self._stop = threading.Event()
        beat = threading.Thread(
            target=_heartbeat, args=(self._links, self._stop, interval), daemon=True
        )
        beat.start()
        weakref.finalize(self, _close_links, self._links, self._stop)

    @property
    def workers(self) -> int:  # type: ignore[override]
        """Workers on the hosts still connected."""
        return self.per_host * sum(1 for link in self._links if not link.lost)

    @property
    def broken(self) -> bool:
        """True once every host is lost."""
        return all(link.lost for link in self._links)

    def idle(self) -> int:
        return sum(link.free(self.per_host) for link in self._live())

    def send(self, work: Work) -> None:
        link = max(self._live(), key=lambda li: li.free(self.per_host))
        modules = local_modules()  # per chunk: an executor's calls may bring new ones
        fn_bytes = self._function(work, modules) if link.fn_key != work.fn_key else b""
        try:
            with by_value(modules):
                payload, buffers = dumps_oob(work.chunk)
        except Exception as exc:
            raise SerializationError(f"a chunk of tasks cannot be serialized: {exc}") from exc
        raws = [b.raw() for b in buffers]
        header = work_header(work, fn_bytes, [r.nbytes for r in raws])
        try:
            link.send_work(work, dumps(header), payload, raws)
        except OSError:  # the connection is gone: its chunks (this one too) run elsewhere
            self._events += link.lose()

    def _function(self, work: Work, modules: list[str]) -> bytes:
        """The function of ``work`` pickled for hosts (the caller's own modules by value),
        once per map; sent once per host (the host's agent gives it once to each worker).

        With no module of the caller's to send by value the map's own bytes are those
        already. Sent by value, a module's globals travel with the function: its size is
        checked again (a warning only if it was small before, the limit always)."""
        if self._fn[0] != work.fn_key:
            if work.fn is None or (work.fn_bytes and not modules):
                fn_bytes = work.fn_bytes
            else:
                with by_value(modules):
                    try:
                        fn_bytes = dumps(work.fn)
                    except Exception as exc:
                        raise SerializationError(
                            f"the function cannot be sent to an SSH host: {type(exc).__name__}: "
                            f"{exc} (its module is sent by value, so every global it uses must "
                            "pickle)"
                        ) from exc
                    if len(fn_bytes) > len(work.fn_bytes):
                        guard(work.fn, len(fn_bytes), size_of, warned_at=len(work.fn_bytes))
            self._fn = (work.fn_key, fn_bytes)
        return self._fn[1]

    def wait(self, timeout: float | None = None, wakeup: int | None = None) -> list[Done | Crashed]:
        live = self._live()
        if self._events:
            events, self._events = self._events, []
            return events
        if not live:
            raise HostUnreachable(self._why_none())
        busy = [link for link in live if link.inflight]
        handles = [link.inbox for link in busy] + ([wakeup] if wakeup is not None else [])
        if not handles:
            return []
        ready = wait_for(handles, timeout)
        events: list[Done | Crashed] = []
        for link in busy:
            if link.inbox in ready:
                try:
                    event = link.receive()
                except (EOFError, OSError):
                    events += link.lose()
                    continue
                if event is not None:
                    events.append(event)
        return events

    def running_fraction(self) -> float:
        return sum(link.share for link in self._live() if link.inflight)

    def abandon(self) -> None:
        self._events.clear()
        for link in self._live():
            if link.inflight:
                link.inflight.clear()
                if not link.control(wire.ABANDON):
                    link.lose()

    def close(self, *, kill: bool = False) -> None:
        _close_links(self._links, self._stop)

    def _live(self) -> list[Link]:
        """The hosts still connected; a host whose ssh ended is lost now."""
        for link in self._links:
            if not link.lost and link.proc.poll() is not None:
                self._events += link.lose()
        return [link for link in self._links if not link.lost]

    def _why_none(self) -> str:
        reasons = "; ".join(link.lost for link in self._links)
        return f"no host of the ssh plan is left: {reasons}"


def _open(plan: SshSettings, links: list[Link], code) -> None:
    """Start every host at once; on any failure stop them all and raise the first's error."""
    interval, count = plan.alive()
    silence = interval * count * 2 + 5
    errors: dict[int, BaseException] = {}

    def start(position: int, link: Link) -> None:
        host = plan.hosts[position]
        done_key = (host, plan.python, plan.setup)
        setup = () if done_key in _set_up else plan.setup
        hello = wire.Hello(host.label, plan.workers_per_host, setup, silence, live_default())
        try:
            link.handshake(code, hello, plan.connect_timeout + 30)
            _set_up.add(done_key)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors[position] = exc

    try:
        for link in links:
            link.start()
        threads = [threading.Thread(target=start, args=pair) for pair in enumerate(links)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    except BaseException:
        _close_links(links, None)
        raise
    if errors:
        _close_links(links, None)
        first = errors[min(errors)]
        if len(errors) > 1:
            others = ", ".join(plan.hosts[p].label for p in sorted(errors)[1:])
            raise type(first)(f"{first} (and: {others})") from first.__cause__
        raise first
    for link in links:
        _warn_version(link)


def _warn_version(link: Link) -> None:
    import sys

    remote = link.info.get("python", "")
    local = ".".join(map(str, sys.version_info[:2]))
    if remote.rsplit(".", 1)[0] != local and link.label not in _warned:
        _warned.add(link.label)
        warnings.warn(
            f"host {link.label} runs Python {remote}, this process {local}: functions defined "
            "in scripts, notebooks or tests travel by value and may not load there; use the "
            "same Python version on both sides (python='python3.x')",
            RuntimeWarning,
            stacklevel=4,
        )


def _heartbeat(links: list[Link], stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        for link in links:
            link.control(wire.PING, block=False)


def _close_links(links: list[Link], stop: threading.Event | None) -> None:
    if stop is not None:
        stop.set()
    for link in links:
        if hasattr(link, "proc"):
            link.quit()
    deadline = time.monotonic() + 5.0  # for every host at once: a cut one waits it out
    for link in links:
        if hasattr(link, "proc"):
            link.stop(grace=max(0.0, deadline - time.monotonic()))
