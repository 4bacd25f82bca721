"""What the dashboard reads and does: the :class:`Source` protocol.

The page never touches a backend itself. A source keeps a snapshot of the backend (its
jobs, their status, the nodes' heartbeats) refreshed at most once per :attr:`Source.every`
seconds however many pages poll it, reads a job's failures and dead letters only when
its counts change, asks EC2 for the fleet rarely and in the background, and carries out
the two actions with the same library calls as the CLI. ``cheerful.cli.dashboard``
implements it over a backend.

The objects it hands out are the durable side's own (read by attribute in
:mod:`.shape`): a job view has ``id``, ``name``, ``kind``, ``label``, ``created``,
``status`` (a ``JobStatus``), ``exact``, ``rate``, ``eta`` and ``samples``; a node has
``worker``, ``beat`` (its heartbeat), ``age``, ``lost`` and ``state``; a failure has
``index``, ``type_name``, ``message``, ``traceback``, ``attempts`` and ``log``; a dead
chunk has ``chunk``, ``indices``, ``reason`` and ``receives``; a fleet instance has
``id``, ``region``, ``type``, ``zone``, ``lifecycle``, ``state``, ``launched``,
``price``, ``job``, ``tasks_done`` and ``trouble``.

Errors: a bad job id, task or attempt raises :class:`~cheerful.errors.ConfigError`; an
unknown job :class:`~cheerful.errors.JobNotFound`; an action that cannot be done
(cancelling a finished job) :class:`~cheerful.errors.JobError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Fleet", "Problems", "Source"]


@dataclass(frozen=True)
class Problems:
    """A job's latest failures and its dead chunks, as read at ``read_at`` (unix time;
    None: not read, because the job has none)."""

    failures: list[Any] = field(default_factory=list)
    dead: list[Any] = field(default_factory=list)
    failed_chunks: int = 0
    read_at: float | None = None


@dataclass(frozen=True)
class Fleet:
    """The cloud instances of the backend as last asked of EC2 (``asked``: unix time,
    None while the first answer is awaited), dollars per job, and what went wrong."""

    instances: list[Any] = field(default_factory=list)
    spent: dict[str, tuple[float, int]] = field(default_factory=dict)
    asked: float | None = None
    error: str = ""


class Source(Protocol):
    """The backend as the dashboard sees it (see the module docstring)."""

    url: str
    """The backend, as shown on the page (no query string: nothing secret)."""
    every: float
    """Seconds between two refreshes of the snapshot; the page polls as often."""

    def refresh(self) -> float:
        """Bring the snapshot up to date if it is older than :attr:`every`; return when
        it was read (unix time)."""
        ...

    def jobs(self) -> list[Any]:
        """Every job's view, newest first."""
        ...

    def nodes(self) -> list[Any]:
        """Every node's last heartbeat, newest first (lost ones marked)."""
        ...

    def job(self, job_id: str) -> Any:
        """The view of job ``job_id``."""
        ...

    def job_nodes(self, job_id: str) -> list[Any]:
        """The nodes that worked on job ``job_id``."""
        ...

    def problems(self, job_id: str) -> Problems:
        """The job's latest failures and its dead chunks."""
        ...

    def fleet(self) -> Fleet | None:
        """The backend's cloud instances and dollars (None: a backend with no cloud)."""
        ...

    def log(self, job_id: str, task: int, attempt: int | None) -> str:
        """What task ``task`` printed in ``attempt`` (1 = the first; None: the last)."""
        ...

    def retry(self, job_id: str) -> int:
        """Send the job's failed and dead tasks again; return how many were sent."""
        ...

    def cancel(self, job_id: str) -> bool:
        """Cancel the job; False if it was cancelled already."""
        ...
