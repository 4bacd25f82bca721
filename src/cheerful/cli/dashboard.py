"""``cheerful dashboard``: a live web page of a backend's jobs, nodes and fleet.

An optional extra (``pip install 'cheerful[dashboard]'``). The command opens the backend
to read (nothing is created), puts a :class:`BackendSource` over it, and serves the page
of :mod:`cheerful.dashboard` until Ctrl-C. It listens on 127.0.0.1 unless told otherwise;
any other address needs a token, generated and printed at start unless one is given.

What watching costs, per refresh (every ``--every`` seconds while a page is open; none
when no page is): the nodes' heartbeats (one listing, one read per node), the jobs (one
listing), per settled job one listing of its retry rounds, per running job nothing more
(estimates from the heartbeats) except every 30 s its exact counts (a listing of its
results: one request per 1,000 chunk records, the job's small files, the dead letters).
A job page with failures lists the job's results and reads its failed chunks' records (at
most :data:`FAILED_CHUNKS_READ`) when its counts of failed or dead tasks change, at most
every :data:`PROBLEMS_EVERY` refreshes. EC2 is asked about the fleet every
:data:`FLEET_EVERY_S` in the background, on s3:// backends that launched some.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import click

from cheerful.errors import ConfigError, JobNotFound

from .console import backend_option
from .observe import opened

__all__ = [
    "DEFAULT_PORT",
    "FAILED_CHUNKS_READ",
    "FLEET_EVERY_S",
    "PROBLEMS_EVERY",
    "BackendSource",
    "dashboard",
    "read_problems",
]

DEFAULT_PORT = 8765
"""Where the dashboard listens unless ``--port`` says otherwise."""
FAILED_CHUNKS_READ = 50
"""A job page shows the failures of at most this many chunks (the latest)."""
PROBLEMS_EVERY = 6
"""A job's failures are read again at most once per this many refreshes (and only when
its counts of failed or dead tasks changed)."""
FLEET_EVERY_S = 30.0
"""Seconds between two questions to EC2 about the fleet."""


@click.command()
@backend_option
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="address to listen on; any but a loopback one needs a token",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="port to listen on (0: any free one)",
)
@click.option(
    "--token",
    envvar="CHEERFUL_DASHBOARD_TOKEN",
    help="the token every request must carry (at least 16 characters; default: a new one "
    "when --host is not a loopback address) [env CHEERFUL_DASHBOARD_TOKEN]",
)
@click.option(
    "--every",
    type=click.FloatRange(min=0.2),
    default=5.0,
    show_default=True,
    help="seconds between two reads of the store while a page is open",
)
def dashboard(backend: str, host: str, port: int, token: str | None, every: float) -> None:
    """Serve a live web page of the backend's jobs, nodes and fleet (Ctrl-C to stop).

    Read straight from the store and the queue: no database, nothing beside the workers.
    Read-only, except "retry failed" and "cancel job", which the page asks to confirm."""
    try:
        from cheerful.dashboard import bind, create_app, is_loopback, new_token, serve
        from cheerful.dashboard.guard import MIN_TOKEN
    except ImportError as exc:
        raise ConfigError(
            f"the dashboard is an optional extra ({exc}): pip install 'cheerful[dashboard]'"
        ) from None
    if token is not None and len(token) < MIN_TOKEN:
        raise ConfigError(f"a dashboard token has at least {MIN_TOKEN} characters")
    loopback = is_loopback(host)
    made = token is None and not loopback
    token = new_token() if made else token
    with opened(backend) as there:
        source = BackendSource(there, every=every)
        sock = bind(host, port)
        app = create_app(source, token=token, loopback=loopback, port=sock.getsockname()[1])

        def announce(bound: int) -> None:
            _announce(source.url, host, bound, token if made else None, token is not None)

        serve(app, sock, announce)


def _announce(url: str, host: str, port: int, token: str | None, guarded: bool) -> None:
    shown = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::", ""):
        import socket

        shown = socket.gethostname()
    address = f"http://{shown}:{port}/"
    if token is not None:
        address += f"?token={token}"
    elif guarded:
        address += " with the token you gave"
    click.echo(f"cheerful dashboard of {url}: {address}  (Ctrl-C to stop)")
    sys.stdout.flush()


class BackendSource:
    """The :class:`cheerful.dashboard.Source` over an opened backend: an
    :class:`~cheerful.durable.overview.Overview` refreshed at most once per ``every``
    seconds, failures read when they change, the fleet asked in the background."""

    def __init__(self, backend: Any, *, every: float = 5.0, clock: Any = time.time) -> None:
        from cheerful.durable.overview import Overview

        self.backend, self.every, self.clock = backend, every, clock
        self.url = _shown(backend.url)
        self.overview = Overview(backend, clock=clock)
        self._lock = threading.RLock()
        self._problems_lock = threading.Lock()
        self._read_at: float | None = None
        self._refreshed = 0.0
        self._problems: dict[str, tuple[tuple[int, int, bool], float, Any]] = {}
        self._fleet = _FleetWatch(backend.url) if backend.url.startswith("s3://") else None

    def refresh(self) -> float:
        """Read the store again if the snapshot is older than ``every`` (a little less:
        pages poll that often); return when it was read."""
        with self._lock:
            if self._read_at is None or time.monotonic() - self._read_at >= 0.8 * self.every:
                self.overview.refresh()
                self._read_at, self._refreshed = time.monotonic(), self.clock()
            return self._refreshed

    def jobs(self) -> list[Any]:
        """Every job's view, newest first."""
        with self._lock:
            return sorted(self.overview.views.values(), key=lambda v: (-v.created, v.id))

    def nodes(self) -> list[Any]:
        """Every node's last heartbeat, newest first."""
        with self._lock:
            return list(self.overview.nodes)

    def job(self, job_id: str) -> Any:
        """The view of ``job_id`` (read now if the snapshot does not have it yet)."""
        from cheerful.durable.job import Job
        from cheerful.durable.layout import validate_id

        validate_id(job_id)
        with self._lock:
            view = self.overview.views.get(job_id)
            if view is None:
                Job.attach(job_id, self.backend)  # JobNotFound, listing the known ones
                self._read_at = None
                self.refresh()
                view = self.overview.views.get(job_id)
        if view is None:
            raise JobNotFound(f"job {job_id} is being submitted: its status is not there yet")
        return view

    def job_nodes(self, job_id: str) -> list[Any]:
        """The nodes that worked on ``job_id``."""
        with self._lock:
            return self.overview.job_nodes(job_id)

    def problems(self, job_id: str) -> Any:
        """The job's latest failures and dead chunks (see the module docstring)."""
        from cheerful.dashboard import Problems

        s = self.job(job_id).status
        if not (s.failed or s.dead):
            return Problems()
        key = (s.failed, s.dead, s.settled)
        with self._problems_lock:
            kept = self._problems.get(job_id)
            recent = kept is not None and time.monotonic() - kept[1] < PROBLEMS_EVERY * self.every
            if kept is not None and (kept[0] == key or recent):
                return kept[2]
            found = read_problems(self.backend, self._attached(job_id), FAILED_CHUNKS_READ)
            self._problems[job_id] = (key, time.monotonic(), found)
            return found

    def fleet(self) -> Any:
        """The fleet (s3:// backends), asked of EC2 in the background; None elsewhere."""
        return None if self._fleet is None else self._fleet.get()

    def log(self, job_id: str, task: int, attempt: int | None) -> str:
        """What task ``task`` printed in ``attempt`` (None: its last)."""
        return self._attached(job_id).logs(task, attempt)

    def retry(self, job_id: str) -> int:
        """``job.retry_failed()``, as ``cheerful retry``."""
        from cheerful.durable.job import Job

        sent = Job.attach(job_id, self.backend).retry_failed()
        self._forget(job_id)
        return sent

    def cancel(self, job_id: str) -> bool:
        """``job.cancel()``, as ``cheerful cancel`` (JobError for a finished job)."""
        from cheerful.durable.job import Job

        cancelled = Job.attach(job_id, self.backend).cancel()
        self._forget(job_id)
        return cancelled

    def _attached(self, job_id: str) -> Any:
        from cheerful.durable.job import Job

        with self._lock:
            job = self.overview.jobs.get(job_id)
        return job if job is not None else Job.attach(job_id, self.backend)

    def _forget(self, job_id: str) -> None:
        """After an action: read the job's exact status and failures at the next refresh."""
        with self._lock:
            self.overview.forget(job_id)
            self._read_at = None
        with self._problems_lock:
            self._problems.pop(job_id, None)


def read_problems(backend: Any, job: Any, chunks: int = FAILED_CHUNKS_READ) -> Any:
    """The failures in the latest ``chunks`` records that have failed tasks, and the dead
    chunks: one listing of the job's results (the summaries name the records with failed
    tasks), one read per such record, the dead letters. A task whose newer record (a
    retry) says otherwise is left out, as ``job.failures()`` would."""
    from cheerful.dashboard import Problems
    from cheerful.durable.counts import list_results
    from cheerful.durable.records import TaskFailure, dead_chunks, read_records
    from cheerful.durable.rounds import read_plan

    store = backend.store
    plan = read_plan(store, job.id, job.manifest)
    listing = list_results(store, job.id)
    newest: dict[int, int] = {}  # task -> its newest retry chunk with a record
    for chunk in sorted(c for c in listing.records if plan.is_retry(c)):
        newest.update((i, chunk) for i in plan.expected(chunk) or ())
    failing = sorted(c for c in listing.records if listing.failed.get(c, 1) > 0)
    failures = []
    for record in read_records(store, job.id, failing[-chunks:], plan):
        for index, error in sorted(record.result.errors.items()):
            if newest.get(index, record.chunk) == record.chunk:
                attempts, log = record.attempts.get(index, 1), record.logs.get(index, "")
                failures.append(
                    TaskFailure(
                        index, error.type_name, error.message, error.traceback, attempts, log
                    )
                )
    dead = dead_chunks(backend.queue, store, job.id, plan)
    failures.sort(key=lambda f: f.index)
    return Problems(failures, dead, len(failing), time.time())


class _FleetWatch:
    """The fleet as EC2 last said, asked at most every :data:`FLEET_EVERY_S` by a thread
    of its own: a slow or failing EC2 never holds up or breaks a page."""

    def __init__(self, url: str) -> None:
        from cheerful.dashboard import Fleet

        self.url, self.snapshot = url, Fleet()
        self._lock = threading.Lock()
        self._asked: float | None = None
        self._busy = False
        self._records: dict[str, str] = {}  # launch record key -> its job

    def get(self) -> Any:
        with self._lock:
            due = self._asked is None or time.monotonic() - self._asked >= FLEET_EVERY_S
            if due and not self._busy:
                self._busy, self._asked = True, time.monotonic()
                threading.Thread(target=self._ask, name="cheerful-fleet", daemon=True).start()
            return self.snapshot

    def _ask(self) -> None:
        from cheerful.durable.fleet import spent, status

        try:
            instances = status(self.url)
            jobs = {i.job for i in instances if i.job and i.job != "*"} | self._launched()
            known = dict(self.snapshot.spent)
            for job in sorted(jobs | {j for j, (_, running) in known.items() if running}):
                known[job] = spent(self.url, job)
            fresh = replace(self.snapshot, instances=instances, spent=known, error="")
            fresh = replace(fresh, asked=time.time())
        except Exception as exc:  # EC2 rights, network, throttling: the page goes on
            fresh = replace(self.snapshot, asked=time.time(), error=f"{type(exc).__name__}: {exc}")
        with self._lock:
            self.snapshot, self._busy = fresh, False

    def _launched(self) -> set[str]:
        """The jobs of launch records not seen yet (their dollars are read once)."""
        import json

        from cheerful.durable import layout
        from cheerful.durable.backends import open_backend

        found = set()
        with open_backend(self.url, create=False) as backend:
            for key in backend.store.list(layout.launches_prefix()):
                if layout.launches_prefix() + "/" in key and key not in self._records:
                    record = json.loads(backend.store.get(key))
                    self._records[key] = str(record.get("job") or "")
                    found.add(self._records[key])
        return {job for job in found if job and job != "*"}


def _shown(url: str) -> str:
    """The backend's URL without its query (endpoints, profile): nothing to hide there
    by design, but nothing the page needs either."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
