"""What a function that drags a large array along costs to ship, per worker (issue 16).

    python bench/globals.py                          # processes, ssh, dask; 200 MB, 100 chunks
    python bench/globals.py --plans processes --mb 50 --chunks 20

The task function is a closure over a numpy array of ``--mb`` megabytes, mapped over
``--chunks`` items with ``chunk_size=1`` (so ``--chunks`` chunks) on 2 workers:
``processes(2)``, ``ssh`` (one loopback sshd host x 2 workers; needs sshd), ``dask``
(a ``LocalCluster`` of 2 one-thread worker processes; needs distributed) and ``durable``
(an embedded backend, 2 local ``cheerful worker`` processes).

Two figures per plan:

  loads per worker   how often each worker process unpickled the array (the array's
                     ``__reduce__`` counts its rebuilds in the worker's environment)
  bytes out          bytes the caller wrote, per connection (each local worker's pipe, each
                     host's ssh stdin) or, for Dask, into the client (task arguments and
                     scatters; a broadcast scatter counts once per worker)

Run it before and after a change that touches how functions travel.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
import warnings
from collections import defaultdict
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import cheerful as cf  # noqa: E402
from cheerful.driven.scheduler import release_pools  # noqa: E402


def _rebuilt(array, token):
    """Unpickling a :class:`Heavy` in a worker: count it in the worker's environment."""
    name = f"BENCH_LOADS_{token}"
    os.environ[name] = str(int(os.environ.get(name, "0")) + 1)
    return Heavy(array, token)


class Heavy:
    """The captured data: an array, and a token naming this run's counter."""

    def __init__(self, array, token):
        self.array, self.token = array, token

    def __reduce__(self):
        return _rebuilt, (self.array, self.token)


def make_task(heavy: Heavy):
    def task(i):
        loads = int(os.environ.get(f"BENCH_LOADS_{heavy.token}", "0"))
        return os.getpid(), loads, float(heavy.array[i % heavy.array.size])

    return task


class _Tally:
    """Bytes the caller writes to each multiprocessing connection (pipes, ssh stdin)."""

    def __init__(self) -> None:
        self.by_conn: dict[int, int] = defaultdict(int)
        self._original = Connection.send_bytes

    def __enter__(self):
        tally, original = self.by_conn, self._original

        def send_bytes(conn, buf, offset=0, size=None):
            n = memoryview(buf).nbytes if size is None else size
            tally[id(conn)] += n
            return original(conn, buf, offset, size)

        Connection.send_bytes = send_bytes
        return self

    def __exit__(self, *exc) -> None:
        Connection.send_bytes = self._original


def _dask_tally(client, counted: dict) -> None:
    """Count what goes into the Dask client: bytes arguments of submits, and scatters."""
    submit, scatter = client.submit, client.scatter
    workers = len(client.nthreads())

    def counting_submit(fn, *args, **kwargs):
        counted["bytes"] += sum(len(a) for a in args if isinstance(a, (bytes, bytearray)))
        return submit(fn, *args, **kwargs)

    def counting_scatter(data, *args, **kwargs):
        size = len(data) if isinstance(data, (bytes, bytearray)) else 0
        counted["bytes"] += size * (workers if kwargs.get("broadcast") else 1)
        return scatter(data, *args, **kwargs)

    client.submit, client.scatter = counting_submit, counting_scatter


def run(plan: cf.Plan, mb: int, chunks: int, dask_client=None) -> dict:
    array = np.ones(mb * 1_000_000 // 8)
    heavy = Heavy(array, uuid.uuid4().hex)
    task = make_task(heavy)
    counted: dict[str, int] = defaultdict(int)
    if dask_client is not None:
        _dask_tally(dask_client, counted)
    started = time.perf_counter()
    with _Tally() as tally, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = cf.map(task, range(chunks), plan=plan, chunk_size=1)
    wall = time.perf_counter() - started
    loads: dict[int, int] = {}
    for pid, n, _ in results:
        loads[pid] = max(loads.get(pid, 0), n)
    out = dict(tally.by_conn) if dask_client is None else {"client": counted["bytes"]}
    return {
        "wall_s": round(wall, 2),
        "loads_per_worker": sorted(loads.values()),
        "bytes_out_per_connection_mb": sorted(round(v / 1e6, 1) for v in out.values() if v),
        "warnings": [f"{w.category.__name__}: {str(w.message)[:160]}" for w in caught],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--plans", default="processes,ssh,dask")
    args = parser.parse_args(argv)
    for kind in args.plans.split(","):
        if kind == "processes":
            report = run(cf.processes(2), args.mb, args.chunks)
        elif kind == "ssh":
            report = _ssh(args.mb, args.chunks)
        elif kind == "dask":
            report = _dask(args.mb, args.chunks)
        elif kind == "durable":
            report = _durable(args.mb, args.chunks)
        else:
            raise SystemExit(f"unknown plan {kind!r}")
        release_pools()
        print(kind, report, flush=True)
    return 0


def _ssh(mb: int, chunks: int) -> dict | str:
    import ssh_servers as servers

    if reason := servers.sshd_available():
        return f"skipped: {reason}"
    root = Path(tempfile.mkdtemp(prefix="cheerful-bench-globals-"))
    keys = servers.make_keys(root)
    server = servers.Sshd(keys)
    try:
        return run(servers.ssh_plan(keys, [server.host], workers_per_host=2), mb, chunks)
    finally:
        release_pools()
        server.stop()


def _dask(mb: int, chunks: int) -> dict | str:
    try:
        import distributed
    except ImportError:
        return "skipped: distributed is not installed"
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        return run(cf.dask(client), mb, chunks, client)


def _durable(mb: int, chunks: int) -> dict:
    """A durable plan on an embedded backend with 2 local workers (the store is a directory:
    "bytes out" counts pipes only; the code is stored once per job)."""
    root = Path(tempfile.mkdtemp(prefix="cheerful-bench-globals-"))
    url = f"local://{root}/backend"
    cf.submit(abs, [1], backend=url).delete()  # set up, as `cheerful init` does
    return run(cf.durable_jobs(url, workers=2), mb, chunks)


if __name__ == "__main__":
    sys.exit(main())
