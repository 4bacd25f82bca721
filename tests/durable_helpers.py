"""Helpers of the durable tests: a stand-in worker, ``drain(backend)`` (tests only, not the
product), real worker processes (:func:`worker_fleet`) and the stored records.

It does in this process, one task at a time, what ``docs/durable.md`` says a worker does
with each message: decode it (malformed, or not one of its job's chunks -> dead letter),
skip it when the job is unknown (dead letter), cancelled or already has a result (delete),
run every task with :func:`cheerful.runner.run_chunk` (same seeds as ``cf.map``; a retry
round's code and attempt numbers), retry a raising task up to the manifest's ``retries``
more times, put each attempt's output (and traceback) at ``logs/<task>.<attempt>`` when
there is any, store a failed chunk's inline inputs at ``inputs/<chunk>``, store the
``ChunkRecord`` with ``put_if_absent`` and then its summary, THEN add to its counters
``status/<worker>.json``, THEN delete the message. End-to-end tests with the real worker
(``cheerful.durable.worker``) replace it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time

from cheerful.durable import layout
from cheerful.durable.backends import Backend
from cheerful.durable.fleet import LocalFleet, worker_command
from cheerful.durable.job import cancelled_key
from cheerful.durable.messages import ChunkMessage, ChunkRecord, MalformedMessage
from cheerful.durable.records import record_keys
from cheerful.durable.rounds import read_plan
from cheerful.errors import ObjectNotFound
from cheerful.runner import run_chunk
from cheerful.serialize import dumps, loads
from cheerful.task import Chunk, ChunkResult

__all__ = ["all_records", "drain", "wait_for", "worker_fleet"]


def drain(backend: Backend, *, worker: str = "fake-worker") -> int:
    """Run every message of ``backend``'s queue until none is visible; return how many
    chunks ran (skipped and dead-lettered messages do not count)."""
    ran = 0
    while True:
        messages = backend.queue.receive(10, wait_s=0.0, visibility_s=300.0)
        if not messages:
            return ran
        for message in messages:
            ran += _handle(backend, message.body, message.receipt, worker)


def _handle(backend: Backend, body: bytes, receipt: str, worker: str) -> int:
    store, queue = backend.store, backend.queue
    try:
        message = ChunkMessage.decode(body)
    except MalformedMessage as exc:
        queue.dead_letter(receipt, f"malformed message: {exc}")
        return 0
    job = message.job
    try:
        manifest = json.loads(store.get(layout.manifest(job)))
    except ObjectNotFound:
        queue.dead_letter(receipt, "job not found")
        return 0
    plan = read_plan(store, job, manifest)
    if not plan.matches(message.chunk, message.indices):
        queue.dead_letter(receipt, "malformed message: not one of its job's chunks")
        return 0
    if store.exists(cancelled_key(job)) or store.exists(layout.result(job, message.chunk)):
        queue.delete(receipt)
        return 0
    fn = loads(store.get(plan.code(message.chunk) or layout.code(job)))
    items = loads(message.inputs if message.spill is None else store.get(message.spill))
    first = plan.first_attempts(message.chunk) or (1,) * len(message.indices)
    record = _run(store, manifest, message, fn, items, worker, first)
    if record.result.errors and message.spill is None:  # for retry_failed, as the worker
        store.put(layout.input(job, message.chunk), message.inputs or b"")
    if store.put_if_absent(layout.result(job, message.chunk), dumps(record)):
        store.put(layout.summary(job, message.chunk, len(record.result.errors)), b"")
        _count(store, job, worker, record.result)
    queue.delete(receipt)
    return 1


def _run(
    store, manifest: dict, message: ChunkMessage, fn, items, worker: str, first
) -> ChunkRecord:
    values, errors, attempts, logs = [], {}, {}, {}
    for index, item, start in zip(message.indices, items, first, strict=True):
        for attempt in range(start, start + manifest["retries"] + 1):
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                chunk = Chunk(index, [item], explicit=(index,))
                one = run_chunk(fn, chunk, manifest["seed"], restore_rng=True)
            error = one.errors.get(index)
            text = out.getvalue() + (error.traceback if error is not None else "")
            if text:
                key = layout.log(message.job, index, attempt)
                store.put(key, text.encode())
                logs[index] = key
            else:
                logs.pop(index, None)
            if error is None:
                break
        attempts[index] = attempt
        values.append(one.values[0])
        if error is not None:
            errors[index] = error
    result = ChunkResult(tuple(message.indices), values, errors)
    return ChunkRecord(message.job, message.chunk, result, attempts, logs, worker, time.time())


def _count(store, job: str, worker: str, result: ChunkResult) -> None:
    key = layout.status(job, worker)
    try:
        counters = json.loads(store.get(key))
    except ObjectNotFound:
        counters = {"done": 0, "failed": 0, "running": 0}
    counters["done"] += len(result) - len(result.errors)
    counters["failed"] += len(result.errors)
    counters.update(updated=time.time(), host=os.uname().nodename, pid=os.getpid())
    store.put(key, json.dumps(counters).encode())


def worker_fleet(backend, count: int, tasks_dir: str, **options) -> LocalFleet:
    """``count`` real ``cheerful worker`` processes serving ``backend`` that can import
    the test tasks in ``tasks_dir`` (tasks of test modules are pickled by reference)."""
    here = os.path.dirname(os.path.abspath(__file__))  # test modules import this one
    path = os.pathsep.join([tasks_dir, here, os.environ.get("PYTHONPATH", "")])
    return LocalFleet(backend, count, command=worker_command, env={"PYTHONPATH": path}, **options)


def all_records(backend: Backend, job) -> list[ChunkRecord]:
    """Every chunk record stored for ``job``, in chunk order."""
    store = backend.store
    return [loads(store.get(key)) for key in record_keys(store, job.id)]


def wait_for(predicate, timeout: float = 30.0, every: float = 0.05):
    """Poll ``predicate`` until it returns something true (returned), or fail after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not true after {timeout} s: {predicate}")
