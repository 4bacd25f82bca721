"""``cf.dask(client)`` beyond the plan contract (which runs on it in tests/plans): bad
input, an unreachable scheduler, and a task that kills its Dask worker."""

from __future__ import annotations

import os

import numpy as np
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


def test_a_large_function_goes_to_each_worker_once_not_with_every_chunk():
    """Over ``SCATTER_BYTES`` the function is scattered once and each chunk refers to it;
    a small one rides along with its chunks."""
    from cheerful.driven.plans.dask import SCATTER_BYTES

    data = np.ones(SCATTER_BYTES // 8 + 1000)
    sent: list[tuple[str, int]] = []
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, distributed.Client(cluster, set_as_default=False) as client:
        submit, scatter = client.submit, client.scatter

        def counting_submit(fn, *args, **kwargs):
            fn_arg = args[1]  # run_dask_chunk(fn_key, fn_bytes or their future, ...)
            sent.append(("submit", len(fn_arg) if isinstance(fn_arg, bytes) else 0))
            return submit(fn, *args, **kwargs)

        def counting_scatter(payload, **kwargs):
            sent.append(("scatter", len(payload)))
            return scatter(payload, **kwargs)

        client.submit, client.scatter = counting_submit, counting_scatter
        plan = cf.dask(client)
        assert cf.map(lambda i: float(data[i]), range(20), chunk_size=1, plan=plan) == [1.0] * 20
        large = [size for kind, size in sent if kind == "scatter"]
        assert len(large) == 1 and large[0] > SCATTER_BYTES
        assert [size for kind, size in sent if kind == "submit"] == [0] * 20
        sent.clear()
        assert cf.map(lambda i: i, range(5), chunk_size=1, plan=plan) == list(range(5))
        assert not [kind for kind, _ in sent if kind == "scatter"]
        assert all(0 < size < SCATTER_BYTES for _, size in sent)
