"""``cf.dask(client)`` beyond the plan contract (which runs on it in tests/plans): bad
input, an unreachable scheduler, and a task that kills its Dask worker."""

from __future__ import annotations

import os

import pytest

import cheerful as cf

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.slow


def dies_on_three(x):
    if x == 3:
        os._exit(3)  # the Dask worker's process dies with it
    return x


def test_a_task_that_kills_its_worker_fails_alone_with_worker_crashed():
    import dask

    quick = {"distributed.scheduler.allowed-failures": 0}  # Dask gives up at once (default 3)
    with dask.config.set(quick), distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, distributed.Client(cluster, set_as_default=False) as client:
        got = cf.map(dies_on_three, range(6), chunk_size=1, plan=cf.dask(client), errors="return")
    assert [got[i] for i in (0, 1, 2, 4, 5)] == [0, 1, 2, 4, 5]
    assert isinstance(got[3], cf.Failure)
    assert isinstance(got[3].exception, cf.WorkerCrashed)


def test_bad_input_and_an_unreachable_scheduler_are_clear_errors():
    for bad in (None, "", 42):
        with pytest.raises(cf.ConfigError, match="distributed.Client or a scheduler address"):
            cf.dask(bad)
    with pytest.raises(cf.BrokenPlan, match="cannot be reached"):
        cf.map(abs, [1], plan=cf.dask("tcp://127.0.0.1:9", timeout=1))
