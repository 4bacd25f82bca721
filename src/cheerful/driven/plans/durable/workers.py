"""The workers a durable plan starts: local ``cheerful worker`` processes or cloud instances.

``workers=N`` starts N local processes, each with its share of the cores; ``workers=
cloud_workers(...)`` launches EC2 instances through :class:`cheerful.durable.fleet.JobFleet`
(terminated when the map returns or is interrupted); ``None`` starts nothing. Workers of one
job (``job=``) leave by themselves once it is settled; those of an ``Executor`` serve every
job of the backend until the executor shuts down. A nested plan's workers run one task at a
time, so the inner level has the worker's cores.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cheerful.errors import BrokenPlan, ConfigError
from cheerful.pool import owned_cores

__all__ = ["WORKERS_GONE_S", "CloudWorkers", "JobWorkers", "cloud_workers"]

WORKERS_GONE_S = 10.0
"""Local workers that have all exited this long before the job settled: an error."""
LOG_TAIL = 2000
"""Characters of each dead worker's log shown in that error."""


@dataclass(frozen=True)
class CloudWorkers:
    """EC2 workers launched for each job of a durable plan. Made by :func:`cloud_workers`."""

    count: int
    options: tuple[tuple[str, Any], ...] = ()

    def fleet_options(self) -> dict[str, Any]:
        """The keywords of :func:`cheerful.durable.fleet.up` for these workers."""
        return {"count": self.count, **dict(self.options)}


def cloud_workers(
    count: int,
    *,
    types: str | Sequence[str] | None = None,
    setup: str | Sequence[str] = (),
    max_dollars: float | None = None,
    max_price: float | None = None,
    slots: int | None = None,
    spot: bool = True,
    regions: Sequence[str] = (),
    requirements: str | None = None,
) -> CloudWorkers:
    """``count`` EC2 instances (spot unless ``spot=False``) of ``types``, each running
    ``setup`` shell commands before its worker; launched for each job of the plan and
    terminated when it returns or is interrupted; ``max_dollars`` caps the job's spend."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(f"cloud_workers(count=...) needs a positive whole number, not {count!r}")
    options: dict[str, Any] = {"spot": bool(spot)}
    if types is not None:
        options["types"] = (types,) if isinstance(types, str) else tuple(types)
    if setup:
        options["setup"] = (setup,) if isinstance(setup, str) else tuple(setup)
    if regions:
        options["regions"] = tuple(regions)
    for name, value in (
        ("max_dollars", max_dollars),
        ("max_price", max_price),
        ("slots", slots),
        ("requirements", requirements),
    ):
        if value is not None:
            options[name] = value
    return CloudWorkers(count, tuple(sorted(options.items())))


class JobWorkers:
    """The workers a durable plan (``plan``) starts for job ``job`` (every job of the backend
    if None)."""

    def __init__(self, plan: Any, backend: Any, job: str | None, *, nested: bool) -> None:
        self.plan, self.backend, self.job, self.nested = plan, backend, job, nested
        self.fleet: Any = None
        self.log_dir: str | None = None
        self.gone_since: float | None = None

    def start(self) -> None:
        """Start them (nothing for ``workers=None``)."""
        workers = self.plan.workers
        if workers is None:
            return
        if isinstance(workers, CloudWorkers):
            self._launch(workers)
            return
        from cheerful.durable.fleet import LocalFleet

        cores = owned_cores()
        share = max(1, cores // workers)
        slots = self.plan.slots or (1 if self.nested else share)
        self.log_dir = tempfile.mkdtemp(prefix="cheerful-durable-plan-")
        self.fleet = LocalFleet(
            self.backend,
            workers,
            job=self.job,
            slots=slots,
            log_dir=self.log_dir,
            env={"CHEERFUL_CORES": str(share)},
        )
        self.fleet.start()

    def _launch(self, workers: Any) -> None:
        from cheerful.durable.fleet import JobFleet

        options = workers.fleet_options()
        if self.nested:
            options.setdefault("slots", 1)
        self.fleet = JobFleet(self.backend.url, self.job, **options)
        launch = self.fleet.start()
        if launch.granted == 0:
            raise BrokenPlan(
                f"EC2 granted no instance for job {self.job}: "
                f"{'; '.join(launch.errors) or 'no reason given'}"
            )

    def check(self, now: float) -> None:
        """Raise :class:`~cheerful.errors.BrokenPlan` once every local worker started here
        has exited (for :data:`WORKERS_GONE_S`) while work is left; their logs say why."""
        from cheerful.durable.fleet import LocalFleet

        if not isinstance(self.fleet, LocalFleet) or self.fleet.alive():
            self.gone_since = None
            return
        self.gone_since = self.gone_since or now
        if now - self.gone_since < WORKERS_GONE_S:
            return  # their last results may still be on the way
        codes = [p.returncode for p in self.fleet.processes]
        raise BrokenPlan(
            f"every worker started for the durable plan exited (codes {codes}){self._logs()}"
        )

    def _logs(self) -> str:
        if self.log_dir is None:
            return ""
        text = ""
        for name in sorted(os.listdir(self.log_dir)):
            with open(os.path.join(self.log_dir, name), errors="replace") as f:
                text += f"\n--- {name}\n{f.read()[-LOG_TAIL:]}"
        return text

    def _stop_local(self, force: bool) -> None:
        self.fleet.stop(force=force)
        if self.log_dir is not None:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def stop(self, *, settled: bool, wait: bool = False) -> None:
        """Stop them: local workers leave (those of a job not settled release their running
        chunks to the queue at once; those of a settled one are idle and, unless ``wait``,
        are waited for in a thread); cloud instances are terminated."""
        from cheerful.durable.fleet import LocalFleet

        if self.fleet is None:
            return
        if isinstance(self.fleet, LocalFleet):
            if settled and not wait:  # idle: each leaves once its receive returns (5 s on SQS)
                for process in self.fleet.alive():
                    process.terminate()
                stopping = threading.Thread(target=self._stop_local, args=(False,))
                stopping.start()  # not a daemon: the interpreter waits for them at exit
            else:
                self._stop_local(not settled)
        elif self.fleet.launch is not None:
            self.fleet.stop()
