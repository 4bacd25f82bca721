"""``cheerful worker``: :func:`run_worker` sets a worker up (its id, its checked options,
the backend, the slots, the spot watcher, the signals) and runs its
:class:`~cheerful.durable.worker.loop.Loop` until it leaves.
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
import signal
import socket
import tempfile
import threading
import time
from typing import Any

from cheerful.errors import ConfigError
from cheerful.gpus import gpu_devices
from cheerful.pool import owned_cores

from .. import layout
from ..queues.base import MAX_VISIBILITY_S
from .events import Config, WorkerSummary
from .loop import Loop
from .slots import SlotPool
from .spot import METADATA_URL_ENV, SpotWatcher

__all__ = ["run_worker", "worker_id"]


def run_worker(
    backend: Any,
    *,
    job: str | None = None,
    slots: int | None = None,
    idle_exit: float | None = None,
    visibility: float = 30.0,
    grace: float = 30.0,
    node: str | None = None,
    stop_event: threading.Event | None = None,
    metadata_url: str | None = None,
    store_timeout: float | None = 300.0,
    stop_at: float | None = None,
    gpus: str | int | None = None,
) -> WorkerSummary:
    """Run chunks from ``backend``'s queue until stopped or idle; return what was done.

    ``backend`` is a backend URL or an object with ``.queue`` and ``.store``. ``job``
    serves that job only (it receives from the job's queue group, never touching other
    jobs' messages); ``slots`` child processes run
    chunks (default: the cores this process may use); ``idle_exit`` leaves after that many
    seconds without work; ``visibility`` is how long a received message stays hidden
    (extended every third of it while its chunk runs); on SIGTERM or SIGINT, or when
    ``stop_event`` is set, running chunks get ``grace`` seconds to finish, then their
    messages are released (a second signal releases them at once). ``node`` names the
    machine in the worker's id (default: the host name). When the store keeps failing (a
    full disk, no rights) for ``store_timeout`` seconds, the worker releases what it holds
    and leaves with reason "store failing" (None: it never gives up). At ``stop_at`` (a
    unix time: a fleet's budget) it stops as on a stop signal and leaves with "budget".
    ``gpus`` ("all" or a count) runs one slot per GPU, each seeing only its own device.

    With ``job``, the worker leaves as soon as that job is settled. Idle, it leaves after
    ``idle_exit`` seconds, but not while messages of the jobs it serves are held by other
    workers (they come back if those die).

    ``metadata_url`` is the instance metadata service to poll for EC2 spot notices
    (IMDSv2, every 5 s; on EC2 ``http://169.254.169.254``); when None, the environment
    variable ``CHEERFUL_METADATA_URL``; when neither is set (or empty) nothing is polled.
    On an interruption notice the worker stops receiving, gives running chunks
    ``min(grace, 10)`` seconds, releases the rest at once and exits with reason
    "spot interruption" (node heartbeat state "interrupted"); on a rebalance
    recommendation it stops receiving, lets running chunks finish and exits with reason
    "rebalance".
    """
    devices = gpu_devices(gpus)
    if devices is not None:
        if slots is not None and slots != len(devices):
            raise ConfigError(
                f"with gpus={gpus!r} the worker runs one slot per GPU ({len(devices)})"
            )
        slots = len(devices)
    config = _config(job, slots, idle_exit, visibility, grace, store_timeout)
    if stop_at is not None:  # on the loop's clock
        config = dataclasses.replace(config, stop_at=time.monotonic() + stop_at - time.time())
    worker = worker_id(node)
    if metadata_url is None:
        metadata_url = os.environ.get(METADATA_URL_ENV) or None
    watcher = SpotWatcher(metadata_url) if metadata_url else None
    opened = None if _is_backend(backend) else _open(backend)
    if (opened or backend).queue.remote:  # hold a chunk per slot in reserve: fewer receives
        config = dataclasses.replace(config, prefetch=config.slots)
    config = dataclasses.replace(config, jitter=random.uniform(0.5, 1.5))
    try:
        with tempfile.TemporaryDirectory(prefix="cheerful-worker-") as log_dir:
            cores_each = max(1, owned_cores() // config.slots)
            store = (opened or backend).store
            pool = SlotPool(
                config.slots, log_dir, cores_each=cores_each, store=store, devices=devices
            )
            try:
                loop = Loop(opened or backend, pool, config, worker, log_dir, stop_event)
                loop.watcher = watcher and watcher.start()
                with _signals(loop):
                    return loop.run()
            finally:
                if watcher is not None:
                    watcher.close()
                pool.close(kill=True)
    finally:
        if opened is not None:
            opened.close()


def worker_id(node: str | None = None) -> str:
    """``<node>-<pid>``: unique among the workers of a backend (node: the host name)."""
    base = re.sub(r"[^A-Za-z0-9_.-]", "-", node or socket.gethostname() or "worker")
    base = base.lstrip("-_.") or "worker"
    return layout.validate_id(f"{base[:100]}-{os.getpid()}", "worker id")


def _config(job, slots, idle_exit, visibility, grace, store_timeout) -> Config:
    if job is not None:
        layout.validate_id(job)
    if slots is None:
        slots = owned_cores()
    if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
        raise ConfigError(f"slots must be a positive whole number, not {slots!r}")
    for name, value in (
        ("idle_exit", idle_exit),
        ("grace", grace),
        ("store_timeout", store_timeout),
    ):
        if value is not None and (not isinstance(value, (int, float)) or value < 0):
            raise ConfigError(f"{name} must be a number of seconds >= 0, not {value!r}")
    if not isinstance(visibility, (int, float)) or not 1 <= visibility <= MAX_VISIBILITY_S:
        raise ConfigError(
            f"visibility must be from 1 to {MAX_VISIBILITY_S:g} seconds, not {visibility!r}"
        )
    return Config(slots, float(visibility), float(grace), idle_exit, job, 0, store_timeout)


def _is_backend(backend: Any) -> bool:
    return hasattr(backend, "queue") and hasattr(backend, "store")


def _open(url: Any):
    from ..backends import open_backend

    return open_backend(url)


class _signals:  # noqa: N801 - a context manager used like a function
    """SIGTERM and SIGINT ask the loop to stop (in the main thread only)."""

    def __init__(self, loop: Loop) -> None:
        self.loop, self.saved = loop, {}

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.saved[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.loop.signals += 1

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
