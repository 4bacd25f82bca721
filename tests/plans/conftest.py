"""The plans the plan contract runs against.

To run the contract against a new plan, add its name to ``PLAN_KINDS`` and a branch to
:func:`_make`; the tests do not change. ``ssh`` runs against a real sshd on 127.0.0.1
(skipped where sshd is not installed).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import cheerful as cf
from ssh_servers import loopback_sshd, ssh_keys, ssh_plan  # noqa: F401 - fixtures

PLAN_KINDS = ["sequential", "processes", "ssh"]


def _make(kind: str, request) -> cf.Plan:
    if kind == "sequential":
        return cf.sequential()
    if kind == "processes":
        return cf.processes(2)
    if kind == "ssh":
        server = request.getfixturevalue("loopback_sshd")
        return ssh_plan(server.keys, [server.host], workers_per_host=2)
    raise AssertionError(f"unknown plan kind {kind!r}")


@pytest.fixture(params=PLAN_KINDS)
def plan_factory(request) -> Callable[[], cf.Plan]:
    """Makes plans of one kind (equal plans share one kept pool)."""
    plan = _make(request.param, request)
    return lambda: plan
