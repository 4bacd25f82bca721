"""Job files and task outputs on the SQS + S3 backend: what they cost in requests and time.

    python bench/job_files.py                       # 50 MiB workdir, 200 tasks, medians of 3
    python bench/job_files.py --tasks 500 --megabytes 20 --repeat 1 --json files.json

Runs against a ``moto_server`` started here on a free loopback port (or ``--endpoint``),
with a fresh bucket and queue per run. As in ``aws_requests.py``, every boto3 client
cheerful makes gets a botocore ``before-send`` hook that counts each request (service,
operation, bytes sent: its Content-Length; retries count, as AWS bills them).

1. Shipping a workdir once. A temporary directory of ``--megabytes`` MiB of random
   (incompressible) bytes in 5 files plus a small script is shipped with
   ``cf.submit(fn, items, workdir=DIR)`` twice. For each submit: wall time, S3 requests
   and bytes sent, and the PUTs of ``files/<sha256>`` (the second must make none). The
   time to pack the directory (tar.gz + sha256, which every submit redoes) is timed apart.
2. Requests added by task outputs. The same ``--tasks`` job runs twice with a real worker
   in this process (``run_worker(..., job=..., slots=2)``): its function writes nothing,
   then one small file into ``cf.output_dir()``. Outputs are stored by the worker's slot
   processes (forked children), whose requests the parent's counters never see, so the
   work phase is counted as: the worker process's requests (hook) + the objects found
   under ``jobs/<job>/outputs/`` afterwards (one conditional PutObject each). As a
   cross-check the hook also tallies, in a file per process, what the slot children send.
   Then ``job.download_files(DIR)`` reads the outputs back; its requests are counted too.

moto is not AWS: request counts carry over, times and byte rates do not.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

FILES = 5
"""How many random files the workdir holds."""
SCRIPT = """\
import os, sys

def main():
    names = sorted(n for n in os.listdir(".") if n.startswith("data-"))
    print(len(names), "data files")

if __name__ == "__main__":
    main()
"""


class RequestLog:
    """Counts requests and bytes sent by (phase, service, operation); keeps the S3 keys
    written. Requests sent by another process than this one (the worker's forked slots)
    go, one line each, to a file of their own under ``children`` instead."""

    def __init__(self, children: Path) -> None:
        self.phase = "setup"
        self.pid = os.getpid()
        self.children = children
        self.counts: collections.Counter = collections.Counter()
        self.sent: collections.Counter = collections.Counter()
        self.writes: list[tuple[str, str, str]] = []  # (phase, operation, url path)
        self.statuses: collections.Counter = collections.Counter()  # (phase, op, HTTP status)

    def hook(self, service: str):
        def count(request, event_name: str = "", **kwargs) -> None:
            operation = event_name.split(".")[-1]
            size = _body_size(request)
            path = request.url.split("?")[0].split("/", 3)[-1] if request.url else ""
            if os.getpid() != self.pid:
                line = f"{self.phase}\t{service}\t{operation}\t{size}\t{path}\n"
                with open(self.children / f"{os.getpid()}.tsv", "a") as out:
                    out.write(line)
                return
            self.counts[(self.phase, service, operation)] += 1
            self.sent[(self.phase, service)] += size
            if service == "s3" and operation in {"PutObject", "CreateMultipartUpload"}:
                self.writes.append((self.phase, operation, path))

        return count

    def answered(self, service: str):
        def note(event_name: str = "", response_dict=None, **kwargs) -> None:
            if os.getpid() == self.pid and response_dict is not None:
                operation = event_name.split(".")[-1]
                self.statuses[
                    (self.phase, f"{service}:{operation}", response_dict["status_code"])
                ] += 1

        return note

    def requests(self, phase: str, service: str | None = None) -> int:
        return sum(n for (p, s, _), n in self.counts.items() if p == phase and service in (None, s))

    def operations(self, phase: str) -> dict[str, int]:
        found = collections.Counter()
        for (p, service, operation), n in self.counts.items():
            if p == phase:
                found[f"{service}:{operation}"] += n
        return dict(found.most_common())

    def child_lines(self) -> list[list[str]]:
        lines = []
        for path in sorted(self.children.glob("*.tsv")):
            lines += [line.split("\t") for line in path.read_text().splitlines()]
        return lines


def _body_size(request) -> int:
    length = request.headers.get("Content-Length")
    if length is not None:
        return int(length)
    body = request.body
    if isinstance(body, (bytes, bytearray)):
        return len(body)
    if isinstance(body, str):
        return len(body.encode("utf-8"))
    if body is not None and hasattr(body, "seek") and hasattr(body, "tell"):
        here = body.tell()
        end = body.seek(0, os.SEEK_END)
        body.seek(here)
        return end - here
    return 0


def instrument(log: RequestLog) -> None:
    """Count every request of every client cheerful makes from now on (in this process
    and in the processes it forks: they make their own clients through the same method)."""
    from cheerful.durable.aws import AwsClients

    original = getattr(AwsClients, "_uncounted", AwsClients._new_client)
    AwsClients._uncounted = original

    def counted(self, service):
        client = original(self, service)
        client.meta.events.register("before-send", log.hook(service))
        client.meta.events.register("response-received", log.answered(service))
        return client

    AwsClients._new_client = counted


def fresh_backend(endpoint: str, log: RequestLog) -> str:
    """A new bucket and queue on ``endpoint``, with fresh (counted) clients; its URL."""
    import cheerful.durable.aws
    from cheerful.durable.backends import init_backend

    cheerful.durable.aws._clients.clear()
    instrument(log)
    name = f"bench{uuid.uuid4().hex[:8]}"
    url = f"s3://{name}/{name}?region=us-east-1&endpoint_url={endpoint}"
    log.phase = "setup"
    init_backend(url, create_bucket=True)
    return url


def make_workdir(root: Path, megabytes: int) -> Path:
    workdir = root / "workdir"
    workdir.mkdir()
    each = megabytes * 1024 * 1024 // FILES
    for i in range(FILES):
        (workdir / f"data-{i}.bin").write_bytes(os.urandom(each))
    (workdir / "run.py").write_text(SCRIPT)
    return workdir


def ship_workdir(endpoint: str, scratch: Path, megabytes: int) -> dict:
    """Part 1: submit twice with the same workdir."""
    import cheerful as cf
    from cheerful.durable.files import pack

    log = RequestLog(scratch / "children-ship")
    log.children.mkdir()
    workdir = make_workdir(scratch, megabytes)
    url = fresh_backend(endpoint, log)
    started = time.perf_counter()
    packed = pack(workdir)
    pack_seconds = time.perf_counter() - started
    out: dict = {
        "workdir_bytes": packed.files.size,
        "pack_bytes": packed.files.packed,
        "pack_seconds": pack_seconds,
    }
    digests = []
    for which in ("first", "second"):
        log.phase = which
        started = time.perf_counter()
        job = cf.submit(_shipped, range(4), backend=url, workdir=workdir, name=which)
        seconds = time.perf_counter() - started
        digests.append(job.manifest["files"]["digest"])
        pack_puts = [w for w in log.writes if w[0] == which and "/files/" in f"/{w[2]}"]
        out[which] = {
            "seconds": seconds,
            "s3_requests": log.requests(which, "s3"),
            "sqs_requests": log.requests(which, "sqs"),
            "s3_bytes_sent": log.sent[(which, "s3")],
            "files_puts": len(pack_puts),
            "by_operation": log.operations(which),
        }
    assert digests[0] == digests[1], "the same workdir packed to another digest"
    assert out["first"]["files_puts"] == 1, "the first submit did not upload the pack"
    assert out["second"]["files_puts"] == 0, "the second submit uploaded the pack again"
    return out


def _shipped(x):
    return os.path.getsize("run.py") + x


def _writes_nothing(x):
    return x * 2


def _writes_one_file(x):
    import cheerful as cf

    with open(os.path.join(cf.output_dir(), "out.txt"), "w") as f:
        f.write(f"task {x}\n")
    return x * 2


def outputs_run(endpoint: str, scratch: Path, tasks: int, fn, label: str) -> dict:
    """Part 2: one job of ``tasks`` tasks of ``fn``, worked by a worker in this process."""
    import cheerful as cf
    from cheerful.durable import layout
    from cheerful.durable.worker import run_worker

    log = RequestLog(scratch / f"children-{label}")
    log.children.mkdir()
    url = fresh_backend(endpoint, log)
    log.phase = "submit"
    job = cf.submit(fn, range(tasks), backend=url, name=label)
    log.phase = "work"
    started = time.perf_counter()
    summary = run_worker(job.backend, job=job.id, slots=2, idle_exit=1.0, grace=5.0)
    work_seconds = time.perf_counter() - started
    log.phase = "collect"
    job.wait(progress=False, timeout=600)
    assert job.results() == [x * 2 for x in range(tasks)], "wrong results"
    log.phase = "download"
    target = scratch / f"download-{label}"
    counts = job.download_files(target)
    log.phase = "audit"  # not a figure: what the store holds now
    outputs = list(job.backend.store.list(layout.outputs_prefix(job.id)))
    children = log.child_lines()
    child_ops = collections.Counter(f"{s}:{op}" for _, s, op, _, _ in children)
    child_output_puts = sum(
        1 for _, s, op, _, path in children if op == "PutObject" and "/outputs/" in path
    )
    worker = log.requests("work")
    work = worker + len(outputs)
    download = log.requests("download")
    return {
        "tasks": tasks,
        "chunks": job.manifest["chunks"],
        "chunk_size": job.manifest["chunk_size"],
        "work_worker_process": worker,
        "output_objects": len(outputs),
        "work_requests": work,
        "work_per_task": work / tasks,
        "slot_children_requests": len(children),
        "slot_children_output_puts": child_output_puts,
        "slot_children_by_operation": dict(child_ops.most_common()),
        "download_requests": download,
        "download_per_task": download / tasks,
        "download_gets": log.counts[("download", "s3", "GetObject")],
        "download_gets_404": log.statuses[("download", "s3:GetObject", 404)],
        "downloaded_files": sum(counts.values()),
        "work_seconds": work_seconds,
        "by_operation": {p: log.operations(p) for p in ("submit", "work", "collect", "download")},
        "worker": str(summary),
    }


def one_run(endpoint: str, tasks: int, megabytes: int) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix="bench-files-"))
    try:
        shipping = ship_workdir(endpoint, scratch, megabytes)
        plain = outputs_run(endpoint, scratch, tasks, _writes_nothing, "plain")
        outputs = outputs_run(endpoint, scratch, tasks, _writes_one_file, "outputs")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert plain["output_objects"] == 0, "a task that writes nothing left outputs"
    assert outputs["output_objects"] == tasks, "not one output object per task"
    assert outputs["downloaded_files"] == tasks, "download_files did not get every file"
    return {"shipping": shipping, "plain": plain, "outputs": outputs}


def _median(runs: list[dict], *path: str) -> float:
    values = []
    for run in runs:
        value = run
        for key in path:
            value = value[key]
        values.append(value)
    return statistics.median(values)


def report(runs: list[dict], tasks: int) -> dict:
    m = {
        "pack_seconds": _median(runs, "shipping", "pack_seconds"),
        "pack_mib": _median(runs, "shipping", "pack_bytes") / 2**20,
        "workdir_mib": _median(runs, "shipping", "workdir_bytes") / 2**20,
    }
    for which in ("first", "second"):
        for key in ("seconds", "s3_requests", "sqs_requests", "s3_bytes_sent", "files_puts"):
            m[f"{which}_{key}"] = _median(runs, "shipping", which, key)
    for label in ("plain", "outputs"):
        for key in (
            "work_worker_process",
            "output_objects",
            "work_requests",
            "work_per_task",
            "slot_children_requests",
            "download_requests",
            "download_per_task",
            "download_gets",
            "download_gets_404",
            "work_seconds",
        ):
            m[f"{label}_{key}"] = _median(runs, label, key)
    m["added_work_per_task"] = m["outputs_work_per_task"] - m["plain_work_per_task"]
    m["added_download_per_task"] = m["outputs_download_per_task"] - m["plain_download_per_task"]
    last = runs[-1]
    print(
        f"1. Shipping a workdir: {m['workdir_mib']:.1f} MiB ({FILES} random files + run.py), "
        f"pack {m['pack_mib']:.1f} MiB; medians of {len(runs)} runs"
    )
    print(f"   packing alone (tar.gz + sha256, redone by every submit): {m['pack_seconds']:.2f} s")
    print(
        f"   {'':14s}{'submit s':>10s}{'S3 req':>8s}{'SQS req':>9s}{'S3 MiB sent':>13s}"
        f"{'PUT files/':>12s}"
    )
    for which in ("first", "second"):
        print(
            f"   {which + ' submit':14s}{m[which + '_seconds']:>10.2f}"
            f"{m[which + '_s3_requests']:>8.0f}{m[which + '_sqs_requests']:>9.0f}"
            f"{m[which + '_s3_bytes_sent'] / 2**20:>13.2f}{m[which + '_files_puts']:>12.0f}"
        )
    for which in ("first", "second"):
        print(
            f"   {which} submit by operation (last run): {last['shipping'][which]['by_operation']}"
        )
    plain, outs = last["plain"], last["outputs"]
    print(
        f"\n2. Task outputs: {tasks} tasks, {plain['chunks']} chunks of {plain['chunk_size']}, "
        f"run_worker(slots=2) in-process; medians of {len(runs)} runs"
    )
    print(f"   {'':46s}{'no output':>10s}{'1 file':>10s}{'added':>10s}")
    rows = [
        ("work: worker process requests (hook)", "work_worker_process", "{:.0f}"),
        ("work: + output objects listed in the store", "output_objects", "{:.0f}"),
        ("work: requests in all", "work_requests", "{:.0f}"),
        ("work: requests per task", "work_per_task", "{:.3f}"),
        ("  cross-check: slot children requests (hook)", "slot_children_requests", "{:.0f}"),
        ("download_files: requests (hook)", "download_requests", "{:.0f}"),
        ("download_files: of which GetObject", "download_gets", "{:.0f}"),
        ("  of which answered 404 (no such key)", "download_gets_404", "{:.0f}"),
        ("download_files: requests per task", "download_per_task", "{:.3f}"),
        ("work phase wall time, s (moto)", "work_seconds", "{:.2f}"),
    ]
    for title, key, form in rows:
        a, b = m[f"plain_{key}"], m[f"outputs_{key}"]
        print(f"   {title:46s}{form.format(a):>10s}{form.format(b):>10s}{form.format(b - a):>10s}")
    print(f"   slot children by operation (last run): {outs['slot_children_by_operation']}")
    for label, run in (("no output", plain), ("1 file", outs)):
        print(f"   work by operation, {label} (last run): {run['by_operation']['work']}")
        print(f"   download by operation, {label} (last run): {run['by_operation']['download']}")
    return m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--megabytes", type=int, default=50, help="MiB of random workdir data")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--endpoint", help="an S3 + SQS endpoint (default: start moto_server)")
    parser.add_argument("--json", help="write the runs and medians here")
    args = parser.parse_args()
    from servers import TEST_CREDENTIALS, MotoServer

    for key, value in TEST_CREDENTIALS.items():
        os.environ.setdefault(key, value)
    server = None
    endpoint = args.endpoint
    started = time.perf_counter()
    if endpoint is None:
        server = MotoServer(Path(tempfile.mkdtemp(prefix="bench-moto-"))).start()
        endpoint = server.endpoint
    runs = []
    try:
        for _ in range(args.repeat):
            runs.append(one_run(endpoint, args.tasks, args.megabytes))
            if server is not None:
                server.reset()  # drop the run's buckets and queues (50 MiB each) from moto
    finally:
        if server is not None:
            server.stop()
            shutil.rmtree(server.workdir, ignore_errors=True)
    median = report(runs, args.tasks)
    if server is not None:
        print(f"\n   moto_server (pid {server.process.pid}, {endpoint}) stopped")
    print(f"\n   total wall time: {time.perf_counter() - started:.0f} s (against moto, not AWS)")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "median": median}, indent=2))


if __name__ == "__main__":
    main()
