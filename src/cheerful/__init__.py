"""cheerful: cheap and cheerful massively parallel batch processing for Python.

``cf.map(fn, items)`` runs a loop on every local core; ``cf.plan(...)`` chooses where
tasks run (``sequential()``, ``processes()``, nested levels); ``cf.Executor`` is a
``concurrent.futures.Executor`` on the same plans.
"""

from .errors import (
    BackendError,
    BrokenPlan,
    CheerfulError,
    ConfigError,
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
    WorkerCrashed,
)
from .executor import Executor
from .mapping import imap, map, starmap
from .plans.base import Plan, plan
from .plans.processes import processes
from .plans.sequential import sequential
from .task import Failure, task_rng

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "BrokenPlan",
    "CheerfulError",
    "ConfigError",
    "Executor",
    "Failure",
    "HostUnreachable",
    "JobError",
    "JobFailed",
    "JobNotFound",
    "ObjectNotFound",
    "Plan",
    "QueueError",
    "SerializationError",
    "StoreError",
    "TaskError",
    "TaskTimeout",
    "WorkerCrashed",
    "__version__",
    "imap",
    "map",
    "plan",
    "processes",
    "sequential",
    "starmap",
    "task_rng",
]
