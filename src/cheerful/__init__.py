"""cheerful: cheap and cheerful massively parallel batch processing for Python.

``cf.map(fn, items)`` runs a loop on every local core; ``cf.plan(...)`` chooses where
tasks run (``sequential()``, ``processes()``, ``ssh(hosts)``, nested levels); ``cf.Executor`` is a
``concurrent.futures.Executor`` on the same plans. ``cf.submit(fn, items)`` (and
``submit_script``, ``submit_command``) makes a durable job: a :class:`Job` to wait for,
read and retry from any process.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from .version import __version__

# Every public name loads on first use: ``import cheerful`` costs about a millisecond, and a
# call loads what it needs (cf.map: the driven side; cf.submit: the durable side, sqlite3;
# cf.Executor: concurrent.futures). ``from cheerful import map`` works the same way.
_LAZY = {
    "Executor": "driven.executor",
    "imap": "driven.mapping",
    "map": "driven.mapping",
    "starmap": "driven.mapping",
    "Plan": "driven.plans.base",
    "dask": "driven.plans.dask",
    "durable_jobs": "driven.plans.durable.plan",
    "cloud_workers": "driven.plans.durable.workers",
    "processes": "driven.plans.processes",
    "sequential": "driven.plans.sequential",
    "ssh": "driven.plans.ssh.plan",
    "plan": "driven.plans.stack",
    "Failure": "task",
    "task_rng": "task",
    "LargeFunctionWarning": "globals_guard",
    "task_progress": "task",
    "UnseededRandomWarning": "rngwatch",
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
_ERRORS = (
    "BackendError",
    "BrokenPlan",
    "CheerfulError",
    "CommandFailed",
    "ConfigError",
    "FleetError",
    "FunctionTooLarge",
    "HostUnreachable",
    "JobError",
    "JobFailed",
    "JobInterrupted",
    "JobNotFound",
    "ObjectNotFound",
    "QueueError",
    "SerializationError",
    "StoreError",
    "TaskError",
    "TaskTimeout",
    "WaitTimeout",
    "WorkerCrashed",
)
_LAZY.update(dict.fromkeys(_ERRORS, "errors"))
_LAZY_MODULES = {"fleet": "durable.fleet"}  # cf.fleet.up(...), .status(...), .down(...)

if _TYPE_CHECKING:  # what the names are, for type checkers and editors
    from cheerful.driven.executor import Executor
    from cheerful.driven.mapping import imap, map, starmap
    from cheerful.driven.plans.base import Plan
    from cheerful.driven.plans.dask import dask
    from cheerful.driven.plans.durable.plan import durable_jobs
    from cheerful.driven.plans.durable.workers import cloud_workers
    from cheerful.driven.plans.processes import processes
    from cheerful.driven.plans.sequential import sequential
    from cheerful.driven.plans.ssh.plan import ssh
    from cheerful.driven.plans.stack import plan
    from cheerful.durable import fleet
    from cheerful.durable.checkpoints import checkpoint, interrupted, restore
    from cheerful.durable.job import Job, JobStatus, TaskFailure, jobs
    from cheerful.durable.modes import CommandResult
    from cheerful.durable.outputs import output_dir
    from cheerful.durable.submit import submit, submit_command, submit_script

    from .errors import (
        BackendError,
        BrokenPlan,
        CheerfulError,
        CommandFailed,
        ConfigError,
        FleetError,
        FunctionTooLarge,
        HostUnreachable,
        JobError,
        JobFailed,
        JobInterrupted,
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
    from .rngwatch import UnseededRandomWarning
    from .task import Failure, task_progress, task_rng


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
    "FunctionTooLarge",
    "HostUnreachable",
    "Job",
    "JobError",
    "JobFailed",
    "JobInterrupted",
    "JobNotFound",
    "JobStatus",
    "LargeFunctionWarning",
    "ObjectNotFound",
    "Plan",
    "QueueError",
    "SerializationError",
    "StoreError",
    "TaskError",
    "TaskFailure",
    "TaskTimeout",
    "UnseededRandomWarning",
    "WaitTimeout",
    "WorkerCrashed",
    "__version__",
    "checkpoint",
    "cloud_workers",
    "dask",
    "durable_jobs",
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
    "task_progress",
    "task_rng",
]
