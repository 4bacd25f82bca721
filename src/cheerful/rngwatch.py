"""Did unseeded tasks draw random numbers? Then their results cannot be reproduced.

R's future warns "UNRELIABLE VALUE" when a future used the random generator without
``seed=``. cheerful does the same, once per map: a chunk run without a seed notes whether
the global generators moved while it ran (Python's ``random``, numpy's global one; their
states are compared at the chunk's start and end, a few microseconds a chunk) or a task
asked for :func:`cheerful.task_rng`. The caller then warns with
:class:`UnseededRandomWarning`.
"""

from __future__ import annotations

import random
import sys
import warnings
from typing import Any

__all__ = ["RandomWatch", "UnseededRandomWarning", "warn_unseeded"]


class UnseededRandomWarning(UserWarning):
    """Tasks drew random numbers without ``seed=``: their results cannot be reproduced."""


class RandomWatch:
    """The global generators' states when a chunk starts; :meth:`moved` compares."""

    def __init__(self) -> None:
        self.python = random.getstate()
        self.numpy = _numpy_position()

    def moved(self) -> bool:
        """True if a global generator was drawn from since (or reseeded)."""
        if random.getstate() != self.python:
            return True
        now = _numpy_position()
        if self.numpy is None and now is not None:  # numpy was imported by a task: has
            return now[0] != _fresh_position()  # its global generator been drawn from?
        return now != self.numpy


def _fresh_position() -> int:
    """The position of numpy's Mersenne Twister right after seeding."""
    numpy = sys.modules["numpy"]
    return numpy.random.RandomState().get_state(legacy=False)["state"]["pos"]


def _numpy_position() -> Any:
    numpy = sys.modules.get("numpy")  # a task that never imported numpy never drew from it
    if numpy is None:
        return None
    state = numpy.random.get_state(legacy=False)
    return state.get("state", {}).get("pos"), bytes(memoryview(state["state"]["key"]))[:64]


def warn_unseeded(label: str, stacklevel: int = 3) -> None:
    """Say, once for this map, that its tasks drew random numbers without a seed."""
    warnings.warn(
        f"tasks of {label} drew random numbers (random, numpy.random or cf.task_rng()) "
        "without seed=: their results cannot be reproduced; pass seed=... to get the same "
        "streams on every run and every plan",
        UnseededRandomWarning,
        stacklevel=stacklevel,
    )
