"""The processes plan: tasks run in local worker processes, one per core by default.

Workers are forked on Linux (fast start, nothing re-imported) and spawned elsewhere; the
pool itself, which pins a crash on its task and replaces the worker, is
:class:`cheerful.processpool.ProcessPool`, shared with the durable worker's slots.
"""

from __future__ import annotations

import sys

from cheerful.errors import ConfigError
from cheerful.gpus import gpu_devices
from cheerful.pool import Pool
from cheerful.processpool import ProcessPool
from cheerful.record import Record

from .base import Plan

__all__ = ["ProcessesPlan", "processes"]


class ProcessesPlan(Plan, Record):
    """Local worker processes. Made by :func:`processes`; ``devices``: one GPU per worker
    (``gpus=``)."""

    FIELDS = ("workers", "start_method", "devices")
    workers: int | None
    start_method: str | None
    devices: tuple[str, ...] | None

    def __init__(
        self,
        workers: int | None = None,
        start_method: str | None = None,
        devices: tuple[str, ...] | None = None,
    ) -> None:
        self._set(workers=workers, start_method=start_method, devices=devices)

    def __hash__(self) -> int:  # a plan keys its kept pool
        return hash((self.workers, self.start_method, self.devices))

    def count(self, cores: int) -> int:
        """Workers this plan starts on a level that owns ``cores`` cores."""
        if self.devices is not None:
            return len(self.devices)
        return self.workers or max(1, cores)

    def open(self, cores: int) -> Pool:
        count = self.count(cores)
        devices = list(self.devices) if self.devices is not None else None
        return ProcessPool(count, self.cores_per_worker(cores), self._method(), devices)

    def cores_per_worker(self, cores: int) -> int:
        return max(1, cores // self.count(cores))

    def capacity(self, cores: int) -> int:
        return self.count(cores)

    def _method(self) -> str:
        if self.start_method:
            return self.start_method
        return "fork" if sys.platform.startswith("linux") else "spawn"

    def __repr__(self) -> str:
        if self.devices is not None:
            return f"processes(gpus={list(self.devices)!r})"
        return f"processes({self.workers if self.workers else ''})"


def processes(
    workers: int | None = None, *, start_method: str | None = None, gpus: int | str | None = None
) -> ProcessesPlan:
    """A plan of ``workers`` local worker processes (default: one per core this level owns).

    Inside a nested topology the default is the cores the outer worker owns, so the inner
    level never oversubscribes the machine. ``start_method`` is ``"fork"`` (Linux default)
    or ``"spawn"``/``"forkserver"``. ``gpus="all"`` (or a number) starts one worker per GPU
    instead, each seeing only its own device (``CUDA_VISIBLE_DEVICES``); the GPUs are those
    ``nvidia-smi`` lists, and a machine without one is an error here, before anything runs.
    """
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"processes(workers=...) needs a positive whole number, not {workers!r}")
    if start_method not in (None, "fork", "spawn", "forkserver"):
        raise ConfigError(
            f"start_method must be 'fork', 'spawn' or 'forkserver', not {start_method!r}"
        )
    devices = gpu_devices(gpus)
    if devices is not None and workers is not None and workers != len(devices):
        raise ConfigError(
            f"processes(gpus={gpus!r}) runs one worker per GPU ({len(devices)}): leave out "
            f"workers={workers}"
        )
    return ProcessesPlan(workers, start_method, None if devices is None else tuple(devices))
