"""Where durable workers come from: this machine (:mod:`.local`) or EC2 (:mod:`.ec2`).

``cf.fleet.up(backend, job=..., count=...)`` launches spot workers that install
themselves and leave when the queue is empty; ``cf.fleet.status(backend)`` lists them and
``cf.fleet.down(backend)`` terminates them.

The EC2 parts load on first use: ``cheerful`` commands (the CLI imports this package for
its ``fleet`` options) and ``cheerful run`` stay light (no boto3 wiring, no backends).
"""

from .local import LocalFleet, worker_command

__all__ = [
    "DEFAULT_IDLE_EXIT_S",
    "DEFAULT_TYPES",
    "FleetOptions",
    "Instance",
    "JobFleet",
    "Launch",
    "LocalFleet",
    "down",
    "job_troubles",
    "spent",
    "status",
    "up",
    "worker_command",
]

DEFAULT_TYPES = ("c6i.large", "c5.large", "m6i.large")
"""Instance types asked for when none are given: 2 vCPUs each, deep spot pools."""
DEFAULT_IDLE_EXIT_S = 120.0
"""Seconds a cloud worker waits on an empty queue before it leaves (and its instance
powers off)."""

_LAZY = {
    "FleetOptions": "ec2",
    "JobFleet": "session",
    "Launch": "ec2",
    "up": "ec2",
    "Instance": "inventory",
    "down": "inventory",
    "job_troubles": "inventory",
    "spent": "inventory",
    "status": "inventory",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
