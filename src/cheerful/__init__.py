"""cheerful: cheap and cheerful massively parallel batch processing for Python.

``cf.map(fn, items)`` runs a loop on every local core; ``cf.plan(...)`` chooses where
tasks run (``sequential()``, ``processes()``, ``ssh(hosts)``, nested levels); ``cf.Executor`` is a
``concurrent.futures.Executor`` on the same plans. ``cf.submit(fn, items)`` (and
``submit_script``, ``submit_command``) makes a durable job: a :class:`Job` to wait for,
read and retry from any process.
"""

from cheerful.driven.executor import Executor
from cheerful.driven.mapping import imap, map, starmap
from cheerful.driven.plans.base import Plan
from cheerful.driven.plans.processes import processes
from cheerful.driven.plans.sequential import sequential
from cheerful.driven.plans.ssh.plan import ssh
from cheerful.driven.plans.stack import plan

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
from .task import Failure, task_rng
from .version import __version__

# Durable jobs load on first use: ``import cheerful`` stays light (no sqlite3).
_LAZY = {
    "checkpoint": "durable.checkpoints",
    "interrupted": "durable.checkpoints",
    "restore": "durable.checkpoints",
    "output_dir": "durable.outputs",
    "CommandResult": "durable.modes",
    "Job": "durable.job",
    "JobStatus": "durable.job",
    "TaskFailure": "durable.job",
    "jobs": "durable.job",
    "submit": "durable.submit",
    "submit_command": "durable.submit",
    "submit_script": "durable.submit",
}
_LAZY_MODULES = {"fleet": "durable.fleet"}  # cf.fleet.up(...), .status(...), .down(...)


def __getattr__(name: str) -> object:
    if name not in _LAZY and name not in _LAZY_MODULES:
        raise AttributeError(f"module 'cheerful' has no attribute {name!r}")
    import importlib

    if name in _LAZY_MODULES:
        value = importlib.import_module(f".{_LAZY_MODULES[name]}", __name__)
    else:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_LAZY_MODULES))


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
    "output_dir",
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
