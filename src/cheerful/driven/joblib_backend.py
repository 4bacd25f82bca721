"""joblib's batches on cheerful's plans: the ``"cheerful"`` joblib backend.

``import cheerful.joblib`` registers it; then ``with joblib.parallel_config(backend=
"cheerful"): ...`` (or scikit-learn's ``n_jobs``) runs joblib's batches on the plan in force
(``cf.processes()``, ``cf.ssh(hosts)``, ``cf.durable_jobs(...)``) through a
:class:`cheerful.Executor`. ``n_jobs`` is honoured: -1 is the plan's capacity, a smaller
number bounds the batches out at once (and the processes started, on the processes plan).

The executor of a plan is kept from one ``Parallel`` call to the next (as loky keeps its
workers), so a loop of small calls starts its workers once; it is shut down when a call
fails, and at exit.

Nested joblib calls inside a task get this backend again (joblib hands it to its workers):
there it follows cheerful's nesting rules, so a task runs its inner ``Parallel`` on the
inner level of ``cf.plan(outer, inner)`` or, with none, one call at a time (no machine runs
``cores x cores`` threads). Anchors: joblib's own ``dask`` backend and Ray's.
"""

from __future__ import annotations

import threading
from concurrent import futures
from typing import Any

try:
    import joblib  # noqa: F401 - the backend's base classes are joblib's
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the cheerful joblib backend needs joblib: pip install 'cheerful[joblib]'"
    ) from exc

from joblib._parallel_backends import (
    AutoBatchingMixin,
    FallbackToBackend,
    ParallelBackendBase,
    SequentialBackend,
)
from joblib.parallel import register_parallel_backend

from cheerful.errors import ConfigError
from cheerful.pool import owned_cores

from .executor import Executor
from .plans.base import Plan
from .plans.processes import ProcessesPlan, processes
from .plans.stack import current_levels
from .plans.stack import plan as plan_levels

__all__ = ["NAME", "CheerfulBackend", "register"]

NAME = "cheerful"
"""The name the backend is registered under."""

Levels = tuple[Plan, ...]
_kept: dict[Levels, Executor] = {}  # by plan and inner levels: kept for the next call
_kept_lock = threading.Lock()


def _executor(levels: Levels) -> Executor:
    """The kept executor of ``levels`` (the plan, then the inner levels in force); a new
    one if there is none, or it is broken."""
    with _kept_lock:
        executor = _kept.get(levels)
        if executor is None or executor._broken is not None:
            with plan_levels(*levels):  # the executor takes the inner levels in force
                executor = _kept[levels] = Executor(plan=levels[0])
        return executor


def _drop(levels: Levels) -> None:
    """Shut a kept executor down at once (its calls are not wanted any more)."""
    with _kept_lock:
        executor = _kept.pop(levels, None)
    if executor is not None:
        executor.shutdown(wait=False, cancel_futures=True)


class CheerfulBackend(AutoBatchingMixin, ParallelBackendBase):
    """joblib's batches as calls of a :class:`cheerful.Executor` on the plan in force.

    ``plan`` fixes the plan instead (``parallel_config(backend="cheerful", plan=...)``)."""

    supports_retrieve_callback = True
    supports_inner_max_num_threads = False
    default_n_jobs = -1

    def __init__(self, nesting_level: int | None = None, plan: Plan | None = None, **kwargs: Any):
        if plan is not None and not isinstance(plan, Plan):
            raise ConfigError(
                f"the cheerful joblib backend takes a plan such as cf.processes(), not {plan!r}"
            )
        super().__init__(nesting_level=nesting_level, **kwargs)
        self.plan = plan
        self.executor: Executor | None = None
        self.opened: Levels | None = None  # the levels of self.executor
        self.parallel: Any = None

    def _plan(self) -> tuple[Plan, tuple[Plan, ...]]:
        levels = current_levels()
        if self.plan is not None:
            return self.plan, levels[1:]
        return levels[0], levels[1:]

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        """The calls that can run at once: ``n_jobs``, at most the plan's capacity; -1 (or
        ``-k``) counts from the capacity as joblib does from the CPUs."""
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        plan, _ = self._plan()
        capacity = plan.capacity(owned_cores())
        if n_jobs is None:
            return capacity
        if n_jobs < 0:
            return max(1, capacity + 1 + n_jobs)
        return min(n_jobs, capacity)

    def configure(self, n_jobs: int = 1, parallel: Any = None, **backend_args: Any) -> int:
        """Open an executor on the plan for this ``Parallel`` call; return its n_jobs."""
        n_jobs = self.effective_n_jobs(n_jobs)
        plan, _ = self._plan()
        if n_jobs == 1 or plan.in_process:
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        if isinstance(plan, ProcessesPlan) and plan.count(owned_cores()) > n_jobs:
            plan = processes(n_jobs, start_method=plan.start_method)  # honour a smaller n_jobs
        levels = (plan, *self._plan()[1])
        self.executor, self.opened = _executor(levels), levels
        self.parallel = parallel
        return n_jobs

    def submit(self, func: Any, callback: Any = None) -> futures.Future:
        """Run one of joblib's batches as one call of the executor."""
        assert self.executor is not None, "configure() first"
        future = self.executor.submit(func)
        if callback is not None:
            future.add_done_callback(callback)
        return future

    def retrieve_result_callback(self, future: futures.Future) -> Any:
        """The batch's results (its task's own exception is raised as joblib expects)."""
        return future.result()

    def get_nested_backend(self) -> tuple[ParallelBackendBase, int | None]:
        """Inside a task, this backend again: it then follows the levels in force there."""
        level = (self.nesting_level or 0) + 1
        return CheerfulBackend(nesting_level=level), None

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """Drop the calls not started and stop the running ones (an error was raised)."""
        if self.opened is not None:
            _drop(self.opened)
            self.executor = self.opened = None
        if ensure_ready and self.parallel is not None:
            self.configure(n_jobs=self.parallel.n_jobs, parallel=self.parallel)

    def terminate(self) -> None:
        """The ``Parallel`` call ended: its executor is kept for the next one."""
        self.executor = self.opened = None
        self.reset_batch_stats()


def register() -> None:
    """Register the backend with joblib as ``"cheerful"`` (done on ``import cheerful.joblib``)."""
    register_parallel_backend(NAME, CheerfulBackend)
