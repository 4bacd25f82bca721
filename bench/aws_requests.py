"""AWS API requests (and their fee) of a durable job on the SQS + S3 backend.

    python bench/aws_requests.py                    # 10,000 trivial tasks, medians of 3 runs
    python bench/aws_requests.py --tasks 2000 --repeat 1 --chunk-size 1 --json out.json

Runs against a ``moto_server`` started here on a free loopback port (or ``--endpoint``),
with a fresh bucket and queue per run. Every boto3 client cheerful makes gets a botocore
``before-send`` hook that counts the request (service, operation, bytes). Three phases:

  submit   cf.submit(x + 1, range(N)) with automatic chunking (or --chunk-size)
  work     one real worker loop (run_worker, 2 slots) until the queue is idle; its idle
           exit is 1 s, so the count includes the worker's last empty long polls
  collect  job.wait() and job.results()

Fees at AWS list prices (us-east-1, 2026): SQS standard queue $0.40 per million
requests, every 64 KiB of a request's payload billed as one request; S3 Standard PUT,
COPY, POST and LIST $0.005 per 1,000, GET, HEAD and the rest $0.0004 per 1,000, DELETE
free. Goals: under 0.05 requests per task, under $0.10 of API fees per million tasks.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

SQS_PER_REQUEST = 0.40 / 1e6
S3_PUT_CLASS = 0.005 / 1000
S3_GET_CLASS = 0.0004 / 1000
S3_PUT_OPERATIONS = {
    "PutObject",
    "CopyObject",
    "CreateMultipartUpload",
    "UploadPart",
    "CompleteMultipartUpload",
    "ListObjectsV2",
    "ListObjects",
    "ListBuckets",
    "CreateBucket",
}
S3_FREE_OPERATIONS = {"DeleteObject", "DeleteObjects"}


class RequestLog:
    """Counts requests by (phase, service, operation) and the SQS 64 KiB units."""

    def __init__(self) -> None:
        self.phase = "setup"
        self.counts: collections.Counter = collections.Counter()
        self.sqs_units: collections.Counter = collections.Counter()

    def hook(self, service: str):
        def count(request, **kwargs) -> None:
            operation = kwargs.get("event_name", "").split(".")[-1]
            self.counts[(self.phase, service, operation)] += 1
            if service == "sqs":
                size = len(request.body or b"") if isinstance(request.body, (bytes, str)) else 0
                self.sqs_units[self.phase] += max(1, math.ceil(size / 65536))

        return count

    def phase_fee(self, phase: str) -> float:
        fee = self.sqs_units[phase] * SQS_PER_REQUEST
        for (p, service, operation), n in self.counts.items():
            if p != phase or service != "s3":
                continue
            if operation in S3_PUT_OPERATIONS:
                fee += n * S3_PUT_CLASS
            elif operation not in S3_FREE_OPERATIONS:
                fee += n * S3_GET_CLASS
        return fee

    def requests(self, phase: str | None = None) -> int:
        return sum(n for (p, _, _), n in self.counts.items() if phase in (None, p))


def instrument(log: RequestLog) -> None:
    """Count every request of every client cheerful makes from now on."""
    from cheerful.durable.aws import AwsClients

    original = getattr(AwsClients, "_uncounted", AwsClients._new_client)
    AwsClients._uncounted = original

    def counted(self, service):
        client = original(self, service)
        client.meta.events.register("before-send", _named(log.hook(service)))
        return client

    AwsClients._new_client = counted


def _named(count):
    def handler(request, event_name=None, **kwargs):
        count(request, event_name=event_name or "", **kwargs)

    return handler


def one_run(endpoint: str, tasks: int, chunk_size: int | None) -> dict:
    import cheerful as cf
    import cheerful.durable.aws
    from cheerful.durable.backends import init_backend, open_backend
    from cheerful.durable.worker import run_worker

    log = RequestLog()
    cheerful.durable.aws._clients.clear()  # fresh clients, counted into this run's log
    instrument(log)
    name = f"bench{uuid.uuid4().hex[:8]}"
    url = f"s3://{name}/{name}?region=us-east-1&endpoint_url={endpoint}"
    init_backend(url, create_bucket=True)
    backend = open_backend(url)
    log.phase = "submit"
    started = time.perf_counter()
    job = cf.submit(_plus_one, range(tasks), backend=backend, chunk_size=chunk_size)
    log.phase = "work"
    summary = run_worker(url, job=job.id, slots=2, idle_exit=1.0, grace=5.0)
    log.phase = "collect"
    job.wait(progress=False, timeout=600)
    results = job.results()
    elapsed = time.perf_counter() - started
    assert results == [x + 1 for x in range(tasks)], "wrong results"
    phases = ["submit", "work", "collect"]
    by_operation = collections.Counter()
    for (phase, service, operation), n in log.counts.items():
        if phase in phases:
            by_operation[f"{service}:{operation}"] += n
    total = sum(log.requests(p) for p in phases)
    fee = sum(log.phase_fee(p) for p in phases)
    return {
        "tasks": tasks,
        "chunks": job.manifest["chunks"],
        "chunk_size": job.manifest["chunk_size"],
        "requests": total,
        "requests_per_task": total / tasks,
        "fee_per_million_tasks": fee / tasks * 1e6,
        "by_phase": {p: log.requests(p) for p in phases},
        "fee_by_phase_per_million": {p: log.phase_fee(p) / tasks * 1e6 for p in phases},
        "by_operation": dict(by_operation.most_common()),
        "seconds": elapsed,
        "worker": str(summary),
    }


def _plus_one(x):
    return x + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--endpoint", help="an S3 + SQS endpoint (default: start moto_server)")
    parser.add_argument("--json", help="write the runs and medians here")
    args = parser.parse_args()
    from servers import TEST_CREDENTIALS, MotoServer

    for key, value in TEST_CREDENTIALS.items():
        os.environ.setdefault(key, value)
    server = None
    endpoint = args.endpoint
    if endpoint is None:
        server = MotoServer(Path(tempfile.mkdtemp(prefix="bench-moto-"))).start()
        endpoint = server.endpoint
    try:
        runs = [one_run(endpoint, args.tasks, args.chunk_size) for _ in range(args.repeat)]
    finally:
        if server is not None:
            server.stop()
    median = {
        key: statistics.median(run[key] for run in runs)
        for key in ("requests", "requests_per_task", "fee_per_million_tasks", "seconds")
    }
    last = runs[-1]
    print(
        f"{args.tasks} trivial tasks, {last['chunks']} chunks of {last['chunk_size']}, "
        f"medians of {len(runs)} runs"
    )
    print(
        f"  requests: {median['requests']:.0f} = {median['requests_per_task']:.4f} per task "
        f"(goal < 0.05)"
    )
    print(f"  API fees: ${median['fee_per_million_tasks']:.4f} per million tasks (goal < $0.10)")
    print(f"  by phase (last run): {last['by_phase']}")
    fees = {p: round(v, 4) for p, v in last["fee_by_phase_per_million"].items()}
    print(f"  fee by phase, $ per million tasks (last run): {fees}")
    print("  by operation (last run):")
    for operation, n in last["by_operation"].items():
        print(f"    {operation:40s} {n}")
    print(f"  wall time against moto (not AWS): {median['seconds']:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "median": median}, indent=2))


if __name__ == "__main__":
    main()
