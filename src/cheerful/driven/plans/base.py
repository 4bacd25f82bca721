"""The driven-execution protocol: a :class:`Plan` opens a :class:`~cheerful.pool.Pool`.

A plan is a small frozen value (``processes(4)``, ``ssh(hosts)``); opening it starts
workers. The pool runs one chunk per idle worker and reports events (see
:mod:`cheerful.pool`); chunk sizing, ordering, retries after crashes and progress live
above it, in :mod:`cheerful.driven.scheduler`, the same for every plan. Which plans are in
force is :mod:`.stack`'s business; this module names no plan.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

from cheerful.pool import Pool
from cheerful.task import ChunkResult

__all__ = ["Plan"]


class Plan(ABC):
    """How to run tasks: a small frozen value; :meth:`open` starts its workers."""

    @abstractmethod
    def open(self, cores: int) -> Pool:
        """Start the workers, given the number of ``cores`` this level may use."""

    @property
    def in_process(self) -> bool:
        """True when tasks run in the caller's own process (no serialization)."""
        return False

    def cores_per_worker(self, cores: int) -> int:
        """Cores each worker of this plan owns, given the cores of the level."""
        return 1

    def capacity(self, cores: int) -> int:
        """How many tasks this plan runs at once on a level that owns ``cores`` cores (for
        callers that size their own batches, as joblib does; a guess where only opening the
        plan would tell)."""
        return max(1, cores)

    def map_chunks(
        self,
        fn: Any,
        items: Sequence[Any],
        *,
        star: bool,
        inner: tuple[Plan, ...],
        chunk_size: int | None,
        seed: int | None,
    ) -> Iterator[ChunkResult] | None:
        """A plan that runs a whole ``cf.map`` its own way (as one durable job) yields its
        chunks' results from here; None (the default): the scheduler cuts the items into
        chunks and runs them on the plan's pool."""
        return None
