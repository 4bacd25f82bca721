"""Where durable workers come from: this machine (:mod:`.local`) or EC2 (:mod:`.ec2`).

``cf.fleet.up(backend, job=..., count=...)`` launches spot workers that install
themselves and leave when the queue is empty; ``cf.fleet.status(backend)`` lists them and
``cf.fleet.down(backend)`` terminates them.
"""

from .ec2 import FleetOptions, Launch, up
from .inventory import Instance, down, spent, status
from .local import LocalFleet, worker_command

__all__ = [
    "FleetOptions",
    "Instance",
    "Launch",
    "LocalFleet",
    "down",
    "spent",
    "status",
    "up",
    "worker_command",
]
