"""The plans the plan contract runs against.

To run the contract against a new plan (``ssh``), add its name to ``PLAN_KINDS`` and a
branch to :func:`_make`; the tests do not change.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import cheerful as cf

PLAN_KINDS = ["sequential", "processes"]


def _make(kind: str) -> cf.Plan:
    if kind == "sequential":
        return cf.sequential()
    if kind == "processes":
        return cf.processes(2)
    raise AssertionError(f"unknown plan kind {kind!r}")


@pytest.fixture(params=PLAN_KINDS)
def plan_factory(request) -> Callable[[], cf.Plan]:
    """Makes plans of one kind (equal plans share one kept pool)."""
    return lambda: _make(request.param)
