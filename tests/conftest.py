"""Fixtures shared by the driven-execution tests (cf.map, cf.Executor, plans)."""

from __future__ import annotations

import pytest

import cheerful as cf


@pytest.fixture
def restore_plan():
    """Put back the plan levels in force before the test (for bare ``cf.plan(p)`` calls)."""
    with cf.plan():
        yield


@pytest.fixture
def two() -> cf.Plan:
    """Two local worker processes: parallel even on a 2-core machine; its pool is reused."""
    return cf.processes(2)
