"""The plan levels of a nested topology, as this process holds them.

``cf.plan(outer, inner)`` runs tasks on ``outer``; a ``cf.map`` called inside one of those
tasks runs on ``inner``. The caller sets the levels (:mod:`cheerful.driven.plans.stack`,
which also knows the default plan); a worker process of any kind, driven or durable, sets
the levels below the one running its task (:func:`set_levels`) before it runs the task.
This module only keeps the value, so that both sides can set it without knowing plans.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["get_levels", "lock", "set_levels"]

lock = threading.RLock()
"""Held while the levels are swapped (``cf.plan`` from several threads)."""

_levels: tuple[Any, ...] | None = None  # None: nothing set; (): innermost, run in-process


def get_levels() -> tuple[Any, ...] | None:
    """The levels set in this process: None if none were set, ``()`` below the last level."""
    return _levels


def set_levels(levels: Sequence[Any] | None) -> tuple[Any, ...] | None:
    """Set the levels (None: back to the default); return the ones they replace."""
    global _levels
    with lock:
        previous = _levels
        _levels = None if levels is None else tuple(levels)
    return previous
