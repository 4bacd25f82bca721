"""cheerful: cheap and cheerful massively parallel batch processing for Python.

``cf.map(fn, items)`` runs a loop on every local core; ``cf.plan(...)`` chooses where
tasks run (``sequential()``, ``processes()``, ``ssh(hosts)``, nested levels); ``cf.Executor`` is a
``concurrent.futures.Executor`` on the same plans. ``cf.submit(fn, items)`` (and
``submit_script``, ``submit_command``) makes a durable job: a :class:`Job` to wait for,
read and retry from any process.
"""

from .errors import (
    BackendError,
    BrokenPlan,
    CheerfulError,
    CommandFailed,
    ConfigError,
    FleetError,
    HostUnreachable,
    JobError,
    JobFailed,
    JobNotFound,
    ObjectNotFound,
    QueueError,
    SerializationError,
    StoreError,
    TaskError,
    TaskTimeout,
    WaitTimeout,
    WorkerCrashed,
)
from .executor import Executor
from .mapping import imap, map, starmap
from .plans.base import Plan, plan
from .plans.processes import processes
from .plans.sequential import sequential
from .plans.ssh import ssh
from .task import Failure, task_rng

__version__ = "0.1.0"

# Durable jobs load on first use: ``import cheerful`` stays light (no sqlite3).
_LAZY = {
    "checkpoint": "checkpoints",
    "interrupted": "checkpoints",
    "restore": "checkpoints",
    "CommandResult": "modes",
    "Job": "job",
    "JobStatus": "job",
    "TaskFailure": "job",
    "jobs": "job",
    "submit": "submission",
    "submit_command": "submission",
    "submit_script": "submission",
}
_LAZY_MODULES = {"fleet"}  # cf.fleet.up(...), cf.fleet.status(...), cf.fleet.down(...)


def __getattr__(name: str):
    if name not in _LAZY and name not in _LAZY_MODULES:
        raise AttributeError(f"module 'cheerful' has no attribute {name!r}")
    import importlib

    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _LAZY_MODULES)


__all__ = [
    "BackendError",
    "BrokenPlan",
    "CheerfulError",
    "CommandFailed",
    "CommandResult",
    "ConfigError",
    "Executor",
    "Failure",
    "FleetError",
    "HostUnreachable",
    "Job",
    "JobError",
    "JobFailed",
    "JobNotFound",
    "JobStatus",
    "ObjectNotFound",
    "Plan",
    "QueueError",
    "SerializationError",
    "StoreError",
    "TaskError",
    "TaskFailure",
    "TaskTimeout",
    "WaitTimeout",
    "WorkerCrashed",
    "__version__",
    "checkpoint",
    "fleet",
    "imap",
    "interrupted",
    "jobs",
    "map",
    "plan",
    "processes",
    "restore",
    "sequential",
    "ssh",
    "starmap",
    "submit",
    "submit_command",
    "submit_script",
    "task_rng",
]
