"""The durable worker: ``cheerful worker`` runs :func:`run_worker`.

``state`` decides (a pure state machine, events in, actions out; ``events`` holds its
values), ``loop`` does the I/O, ``run`` sets a worker up, ``jobs`` keeps the job specs and the worker's counters,
``logs`` stores the task logs, ``spot`` watches for EC2 spot notices. See
``docs/durable.md``, "Worker".
"""

from .events import WorkerSummary
from .run import run_worker, worker_id

__all__ = ["WorkerSummary", "run_worker", "worker_id"]
