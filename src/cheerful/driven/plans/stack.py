"""The plan levels in force: ``cf.plan(...)``, and the default when none is set.

The *plan stack* holds the levels of a nested topology: ``cf.plan(outer, inner)`` runs
tasks on ``outer`` and a ``cf.map`` called inside one of those tasks on ``inner``. The
value itself lives in :mod:`cheerful.levels` (worker processes set it too); this module
gives it meaning: with nothing set, the caller's default is ``processes()`` and a worker's
is ``sequential()``, and below the last level tasks run in-process.
"""

from __future__ import annotations

import os
from typing import Any

from cheerful.errors import ConfigError
from cheerful.levels import get_levels, lock, set_levels

from ..scheduler import release_pools
from .base import Plan
from .processes import processes
from .sequential import sequential

__all__ = ["current_levels", "plan"]


def _default_levels() -> tuple[Plan, ...]:
    if os.environ.get("CHEERFUL_IN_WORKER"):
        return (sequential(),)
    return (processes(),)


def current_levels() -> tuple[Plan, ...]:
    """The plan levels in force: the ones ``cf.plan`` set, or the default."""
    levels = get_levels()
    if levels is None:
        return _default_levels()
    return levels or (sequential(),)


class plan:  # noqa: N801 - used like R's plan(): a function call that is also a `with`
    """Set the plan levels: for the rest of the program, or for a ``with`` block.

    ``cf.plan(cf.processes(4))`` sets it from now on; ``with cf.plan(p): ...`` sets it
    for the block and puts the previous one back afterwards. Several plans make a nested
    topology: ``cf.plan(outer, inner)``. ``cf.plan()`` with no argument returns the
    levels in force (as a tuple) without changing anything, via :attr:`levels`.
    """

    def __init__(self, *plans: Plan) -> None:
        for p in plans:
            if not isinstance(p, Plan):
                raise ConfigError(
                    f"cf.plan() takes plans such as cf.processes() or cf.sequential(), not {p!r}"
                )
        with lock:
            self._previous = get_levels()
            if plans:
                set_levels(plans)
        self.levels: tuple[Plan, ...] = current_levels()

    def __enter__(self) -> plan:
        return self

    def __exit__(self, *exc: Any) -> None:
        set_levels(self._previous)
        release_pools(keep=current_levels())

    def __repr__(self) -> str:
        return f"plan({', '.join(map(repr, self.levels))})"
