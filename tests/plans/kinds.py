"""A fixture maker for tests of the plan contract that hold for some plan kinds only."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import cheerful as cf


def only_kinds(kinds: tuple[str, ...], why: str) -> Callable:
    """A fixture: a plan of the test's kind, the test skipped with ``why`` (the kind named
    in it) for kinds not in ``kinds``."""

    @pytest.fixture
    def plan_of_kind(plan_factory, plan_kind) -> cf.Plan:
        if plan_kind not in kinds:
            pytest.skip(why.format(kind=plan_kind))
        return plan_factory()

    return plan_of_kind
