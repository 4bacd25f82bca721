"""The Dask plan: tasks run on an existing Dask cluster's workers, ``cf.dask(client)``.

Users who already run Dask (on Kubernetes, or on an HPC cluster through dask-jobqueue's
Slurm/PBS/SGE clusters) keep their cluster; cheerful sends each chunk as one Dask task
(:func:`run_dask_chunk`), so ``cf.map``, ``cf.Executor``, seeds, nesting, errors and
progress behave as on every plan. What Dask does not promise, cheerful cannot add: a worker
lost mid-chunk is Dask's to recover (it runs the chunk again elsewhere, up to its
``allowed-failures``; then the chunk's first task fails with
:class:`~cheerful.errors.WorkerCrashed`), and nothing survives the client's process: for a
job that must outlive the caller use ``cf.durable_jobs``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from cheerful.errors import BrokenPlan, ConfigError
from cheerful.levels import set_levels
from cheerful.pool import Crashed, Done, Pool, Work
from cheerful.runner import run_chunk
from cheerful.serialize import loads
from cheerful.task import Chunk, ChunkResult

from .base import Plan

__all__ = ["FUNCTIONS_KEPT", "SCATTER_BYTES", "DaskPlan", "dask", "run_dask_chunk"]


@dataclass(frozen=True)
class DaskPlan(Plan):
    """A Dask cluster's workers. Made by :func:`dask`."""

    address: str
    client: Any = field(default=None, compare=False, hash=False, repr=False)
    timeout: float = 10.0

    def open(self, cores: int) -> Pool:
        return DaskPool(self._client())

    def _client(self) -> Any:
        if self.client is not None:
            return self.client
        from distributed import Client

        try:
            return Client(self.address, set_as_default=False, timeout=self.timeout)
        except OSError as exc:
            raise BrokenPlan(
                f"the Dask scheduler at {self.address} cannot be reached: {exc}"
            ) from exc

    def capacity(self, cores: int) -> int:
        return max(1, sum(self._client().nthreads().values()))

    def __repr__(self) -> str:
        return f"dask({self.address!r})"


def dask(client_or_address: Any, *, timeout: float = 10.0) -> DaskPlan:
    """A plan whose workers are a Dask cluster's: a ``distributed.Client`` (kept open by
    its owner) or a scheduler address such as ``"tcp://10.0.0.5:8786"`` (connected to
    within ``timeout`` seconds when the plan is opened)."""
    try:
        from distributed import Client
    except ImportError as exc:
        raise ConfigError(
            "cf.dask needs Dask's distributed package: pip install 'cheerful[dask]'"
        ) from exc
    if isinstance(client_or_address, Client):
        address = client_or_address.scheduler.address
        return DaskPlan(address, client_or_address, timeout)
    if isinstance(client_or_address, str) and client_or_address.strip():
        return DaskPlan(client_or_address.strip(), None, timeout)
    raise ConfigError(
        f"cf.dask takes a distributed.Client or a scheduler address, not {client_or_address!r}"
    )


SCATTER_BYTES = 1_000_000
"""A function pickled larger than this goes to the cluster once (``client.scatter``, to
every worker) and its chunks refer to it; a smaller one rides along with each chunk (a
scatter costs a round trip, more than sending a few hundred kB again)."""
FUNCTIONS_KEPT = 4
"""Functions a Dask worker keeps unpickled (the latest used): two maps may share a cluster."""

_functions: OrderedDict[str, Any] = OrderedDict()  # on a Dask worker: functions by key
_functions_lock = threading.Lock()


def run_dask_chunk(
    fn_key: str, fn_bytes: bytes, chunk: Chunk, seed: int | None, levels: tuple
) -> ChunkResult:
    """Run one chunk on a Dask worker (a task of Dask's), with the inner levels in force.

    The function is unpickled once per worker process and kept while it is among the
    :data:`FUNCTIONS_KEPT` latest (Dask's workers are threads: the levels are set for this
    call and put back). ``fn_bytes`` arrives once per worker when it was scattered."""
    with _functions_lock:
        fn = _functions.get(fn_key)
        if fn is not None:
            _functions.move_to_end(fn_key)
    if fn is None:
        fn = loads(fn_bytes)
        with _functions_lock:
            _functions[fn_key] = fn
            while len(_functions) > FUNCTIONS_KEPT:
                _functions.popitem(last=False)
    saved = set_levels(levels)
    try:
        return run_chunk(fn, chunk, seed)
    finally:
        set_levels(saved)


class DaskPool(Pool):
    """Chunks as Dask tasks; one slot per thread of the cluster's workers."""

    def __init__(self, client: Any) -> None:
        self.client = client
        threads = sum(client.nthreads().values())
        if threads == 0:
            raise BrokenPlan(f"the Dask cluster at {client.scheduler.address} has no worker")
        self.workers = threads
        self.running: dict[Any, int] = {}  # Dask future -> work id
        self.scattered: tuple[str, Any] = ("", None)  # a large function's key and future
        self.ended: queue.SimpleQueue = queue.SimpleQueue()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)

    def idle(self) -> int:
        return max(0, self.workers - len(self.running))

    def send(self, work: Work) -> None:
        future = self.client.submit(
            run_dask_chunk,
            work.fn_key,
            self._function(work),
            work.chunk,
            work.seed,
            tuple(work.levels),
            pure=False,
            key=f"cheerful-chunk-{work.work_id}-{os.urandom(4).hex()}",
        )
        self.running[future] = work.work_id
        future.add_done_callback(self._ended)

    def _function(self, work: Work) -> Any:
        """The function's bytes, or for a large one a Dask future of them: scattered to
        every worker once per function (each worker gets it once, not once per chunk) and
        kept until the next function or the pool's end."""
        if len(work.fn_bytes) <= SCATTER_BYTES:
            return work.fn_bytes
        if self.scattered[0] != work.fn_key:
            self.scattered = ("", None)  # the previous function's data may go
            data = self.client.scatter(work.fn_bytes, broadcast=True, hash=False)
            self.scattered = (work.fn_key, data)
        return self.scattered[1]

    def _ended(self, future: Any) -> None:  # on Dask's thread
        self.ended.put(future)
        # a full pipe already wakes the waiter; a closed one: the pool is gone
        with contextlib.suppress(OSError):
            os.write(self.wake_w, b"x")

    def wait(self, timeout: float | None = None, wakeup: int | None = None) -> list[Done | Crashed]:
        events = self._events()
        if events or not self.running:
            return events
        fds = [self.wake_r] + ([wakeup] if wakeup is not None else [])
        select.select(fds, [], [], timeout)
        return self._events()

    def _events(self) -> list[Done | Crashed]:
        with contextlib.suppress(OSError):  # empty (non-blocking), or closed
            while os.read(self.wake_r, 4096):
                pass
        events: list[Done | Crashed] = []
        while True:
            try:
                future = self.ended.get_nowait()
            except queue.Empty:
                return events
            work_id = self.running.pop(future, None)
            if work_id is None:
                continue  # abandoned
            events.append(self._event(work_id, future))

    def _event(self, work_id: int, future: Any) -> Done | Crashed:
        if future.status == "finished":
            return Done(work_id, future.result())
        if future.status == "cancelled":
            return Crashed(work_id, None, "its Dask task was cancelled")
        error = future.exception()
        return Crashed(work_id, None, f"Dask could not run it: {type(error).__name__}: {error}")

    def abandon(self) -> None:
        futures = list(self.running)
        self.running.clear()
        if futures:
            self.client.cancel(futures)

    def close(self, *, kill: bool = False) -> None:
        self.abandon()
        self.scattered = ("", None)
        for fd in (self.wake_r, self.wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
