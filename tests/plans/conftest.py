"""The plans the plan contract runs against.

To run the contract against a new plan, add its name to ``PLAN_KINDS`` and a branch to
:func:`_make`; the tests do not change. ``ssh`` runs against a real sshd on 127.0.0.1
(skipped where sshd is not installed), ``dask`` against a real ``distributed.LocalCluster``
of two worker processes (skipped without Dask), ``durable`` as durable jobs on an embedded
backend with two ``cheerful worker`` processes started for each map.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import cheerful as cf
from ssh_servers import loopback_sshd, ssh_keys, ssh_plan  # noqa: F401 - fixtures

PLAN_KINDS = ["sequential", "processes", "ssh", "dask", "durable"]


def _make(kind: str, request) -> cf.Plan:
    if kind == "sequential":
        return cf.sequential()
    if kind == "processes":
        return cf.processes(2)
    if kind == "ssh":
        server = request.getfixturevalue("loopback_sshd")
        return ssh_plan(server.keys, [server.host], workers_per_host=2)
    if kind == "dask":
        return cf.dask(request.getfixturevalue("dask_client"))
    if kind == "durable":
        url = f"local://{request.getfixturevalue('tmp_path')}/backend"
        cf.submit(abs, [1], backend=url).delete()  # set up, as `cheerful init` does
        return cf.durable_jobs(url, workers=2)
    raise AssertionError(f"unknown plan kind {kind!r}")


@pytest.fixture(params=PLAN_KINDS)
def plan_factory(request) -> Callable[[], cf.Plan]:
    """Makes plans of one kind (equal plans share one kept pool)."""
    plan = _make(request.param, request)
    return lambda: plan


@pytest.fixture
def plan_kind(request) -> str:
    """The kind (a name of ``PLAN_KINDS``) ``plan_factory`` makes in this test."""
    return request.node.callspec.params["plan_factory"]


@pytest.fixture(scope="session")
def dask_client():
    """A client of a real Dask ``LocalCluster``: two worker processes of one thread each."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, distributed.Client(cluster, set_as_default=False) as client:
        yield client
