"""The durable plan: ``cf.plan(cf.durable_jobs(backend, workers=...))``.

``cf.map`` on it submits one durable job (:func:`cheerful.submit`) and yields its chunks'
results as workers store them (:mod:`.stream`): results come back in input order, errors and
seeds as on every plan, progress from the job. ``workers=`` says where the workers come
from: ``None`` (they already run: ``cheerful worker`` somewhere), ``N`` local worker
processes, or :func:`cloud_workers` (EC2 instances launched for the job and terminated when
the map returns or is interrupted). The job lives in the store: if the caller dies it goes
on, and Ctrl-C raises :class:`~cheerful.errors.JobInterrupted`, which says how to reattach.

A nested ``cf.plan(cf.durable_jobs(...), cf.processes())`` runs each task with the inner levels
in force; the workers it starts then run one task at a time, so the inner level has the
worker's cores.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from cheerful.errors import ConfigError
from cheerful.pool import Pool
from cheerful.task import ChunkResult, as_items

from ..base import Plan
from .workers import CloudWorkers

__all__ = ["DurablePlan", "durable_jobs"]


Workers = int | CloudWorkers | None


@dataclass(frozen=True)
class DurablePlan(Plan):
    """Tasks run as a durable job on ``backend``'s workers. Made by :func:`durable_jobs`."""

    backend: str
    workers: Workers = None
    slots: int | None = None
    retries: int = 0
    timeout: float | None = None
    name: str | None = None
    files: tuple[str, ...] = ()
    workdir: str | None = None
    poll: float = 0.5

    def open(self, cores: int) -> Pool:
        from .pool import JobPool

        return JobPool(self, cores)

    def cores_per_worker(self, cores: int) -> int:
        return cores  # a durable worker is a machine of its own: the inner level sees its cores

    def capacity(self, cores: int) -> int:
        if isinstance(self.workers, int):
            return self.workers * (self.slots or max(1, cores // self.workers))
        return max(1, cores)  # the workers elsewhere are not known here

    def map_chunks(
        self,
        fn: Any,
        items: Sequence[Any],
        *,
        star: bool,
        inner: tuple[Plan, ...],
        chunk_size: int | None,
        seed: int | None,
    ) -> Iterator[ChunkResult]:
        """Submit ``items`` as one job and yield its chunks' results as they are stored."""
        from .stream import run_job

        items = as_items(items)
        if not items:
            return (result for result in ())  # an empty map is an empty list here too: no job
        return run_job(self, fn, items, star, inner, chunk_size, seed)

    def __repr__(self) -> str:
        workers = "" if self.workers is None else f", workers={self.workers!r}"
        return f"durable_jobs({self.backend!r}{workers})"


def durable_jobs(
    backend: str = "local",
    *,
    workers: Workers = None,
    slots: int | None = None,
    retries: int = 0,
    timeout: float | None = None,
    name: str | None = None,
    files: Sequence[str | os.PathLike[str]] = (),
    workdir: str | os.PathLike[str] | None = None,
    poll: float = 0.5,
) -> DurablePlan:
    """A plan that runs each ``cf.map`` as a durable job on ``backend`` ("local", a
    directory, or ``s3://bucket/prefix?queue=...``, set up with ``cheerful init``).

    ``workers``: None (workers already serve the backend), a number of local worker
    processes started for each job, or :func:`cloud_workers`. ``slots``: tasks each started
    worker runs at once (default: its share of the cores). ``retries``, ``timeout``,
    ``name``, ``files`` and ``workdir`` are those of :func:`cheerful.submit` (no retries by
    default, as on every other plan). ``poll``: seconds between two looks at the store.
    """
    if not isinstance(backend, str) or not backend:
        raise ConfigError(
            f"durable_jobs(backend=...) needs a backend URL or 'local', not {backend!r}"
        )
    local = not isinstance(workers, CloudWorkers) and workers is not None
    if local and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(
            "durable_jobs(workers=...) takes None (workers already run), a number of local "
            f"worker processes, or cf.cloud_workers(count, ...); not {workers!r}"
        )
    if isinstance(workers, CloudWorkers) and not backend.startswith("s3://"):
        raise ConfigError(
            f"cloud workers need an s3:// backend they can reach, not {backend!r}: "
            "cheerful init s3://bucket/prefix, then durable_jobs('s3://bucket/prefix', ...)"
        )
    for what, value in (("slots", slots), ("retries", retries)):
        least = 1 if what == "slots" else 0
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < least
        ):
            raise ConfigError(
                f"durable_jobs({what}=...) needs a whole number of at least {least}, not {value!r}"
            )
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ConfigError(
            f"durable_jobs(timeout=...) needs a positive number of seconds, not {timeout!r}"
        )
    if not isinstance(poll, (int, float)) or poll <= 0:
        raise ConfigError(
            f"durable_jobs(poll=...) needs a positive number of seconds, not {poll!r}"
        )
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    return DurablePlan(
        backend,
        workers,
        slots,
        retries,
        timeout,
        name,
        tuple(os.fspath(f) for f in files),
        None if workdir is None else os.fspath(workdir),
        float(poll),
    )
