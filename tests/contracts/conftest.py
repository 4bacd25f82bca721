"""Fixtures for the contract suites: one harness per implementation of a protocol.

To run a suite against a new implementation, add its name to ``QUEUE_KINDS`` or
``STORE_KINDS`` and a branch to the matching ``_make_*_harness``; the tests do not change.
A harness makes fresh, empty instances and says how to let time pass for them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cheerful.durable.aws import AwsClients
from cheerful.durable.queues import Queue
from cheerful.durable.queues.sqlite import SqliteQueue
from cheerful.durable.queues.sqs import SqsQueue
from cheerful.durable.stores import Store
from cheerful.durable.stores.local import LocalStore
from cheerful.durable.stores.s3 import S3Store

QUEUE_KINDS = ["sqlite", "sqs"]
STORE_KINDS = ["local", "s3-moto", "s3-seaweedfs"]


class ManualClock:
    """A clock that moves only when a test says so."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward."""
        self.now += seconds


@dataclass
class QueueHarness:
    """Makes queues of one kind. ``make(real_time=False, **options)`` returns a fresh empty
    queue (options as ``SqliteQueue``'s: ``max_receives``, ``max_message_bytes``);
    ``advance(s)`` lets ``s`` seconds pass for visibility timeouts of queues made without
    ``real_time`` (moving an injected clock, or sleeping where time cannot be injected);
    ``check_integrity(queue)`` asserts the backing storage is sound."""

    kind: str
    make_queue: Callable[..., Queue]
    advance: Callable[[float], None]
    check_integrity: Callable[[Queue], None] = lambda queue: None
    made: list[Queue] = field(default_factory=list)
    exact_receipts: bool = True
    """The queue tells a stale receipt, or a message already deleted, from a fresh one
    (SQS does not: it accepts both and reports success)."""
    many: int = 500
    """Messages per process in the many-process test (SQS servers slow down with depth)."""
    exactly_once: bool = True
    """Concurrent receivers never get the same message twice while it is hidden. SQS
    standard queues promise at least once (moto, under 4 racing receivers, rarely hands a
    message out twice); cheerful's exactly-once results come from write-once records."""

    def make(self, *, real_time: bool = False, **options: object) -> Queue:
        """A fresh, empty queue; ``real_time`` for queues shared with other processes."""
        queue = self.make_queue(real_time, **options)
        self.made.append(queue)
        return queue


@dataclass
class StoreHarness:
    """Makes stores of one kind: ``make()`` returns a fresh, empty store."""

    kind: str
    make_store: Callable[[], Store]
    made: list[Store] = field(default_factory=list)

    def make(self) -> Store:
        """A fresh, empty store."""
        store = self.make_store()
        self.made.append(store)
        return store


@pytest.fixture(params=QUEUE_KINDS)
def queue_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueHarness]:
    """A harness for each queue implementation."""
    harness = _make_queue_harness(request.param, request, tmp_path)
    try:
        yield harness
    finally:
        for queue in harness.made:
            queue.close()


@pytest.fixture
def queue(queue_factory: QueueHarness) -> Queue:
    """A fresh queue with the default options."""
    return queue_factory.make()


@pytest.fixture(params=STORE_KINDS)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreHarness]:
    """A harness for each store implementation."""
    harness = _make_store_harness(request.param, request, tmp_path)
    try:
        yield harness
    finally:
        for store in harness.made:
            store.close()


@pytest.fixture
def store(store_factory: StoreHarness) -> Store:
    """A fresh, empty store."""
    return store_factory.make()


def _make_queue_harness(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> QueueHarness:
    counter = iter(range(1_000_000))
    if kind == "sqlite":
        clock = ManualClock()

        def make(real_time: bool, **options: object) -> Queue:
            path = tmp_path / f"queue{next(counter)}.db"
            return SqliteQueue(path, clock=time.time if real_time else clock, **options)

        def check(queue: Queue) -> None:
            assert queue.integrity_check() == "ok"

        return QueueHarness(kind, make, clock.advance, check)
    if kind == "sqs":
        server = request.getfixturevalue("moto_server")
        clients = AwsClients(region="us-east-1", sqs_endpoint=server.endpoint)
        run = uuid.uuid4().hex[:8]

        def make_sqs(real_time: bool, **options: object) -> Queue:
            queue = SqsQueue(f"t{run}-{next(counter)}", clients=clients, **options)
            queue.create()
            return queue

        def sleep(seconds: float) -> None:  # SQS runs on the server's clock
            time.sleep(seconds)

        return QueueHarness(
            kind, make_sqs, sleep, exact_receipts=False, many=40, exactly_once=False
        )
    raise ValueError(f"no queue harness for {kind!r}")


def _make_store_harness(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> StoreHarness:
    counter = iter(range(1_000_000))
    if kind == "local":
        return StoreHarness(kind, lambda: LocalStore(tmp_path / f"store{next(counter)}"))
    if kind.startswith("s3-"):
        server = request.getfixturevalue(_S3_SERVERS[kind])
        clients = AwsClients(region="us-east-1", s3_endpoint=server.endpoint)
        bucket = "contract"
        S3Store(bucket, clients=clients).create_bucket("us-east-1")
        run = uuid.uuid4().hex[:8]  # a fresh, empty prefix per store
        return StoreHarness(
            kind, lambda: S3Store(bucket, f"t-{run}-{next(counter)}", clients=clients)
        )
    raise ValueError(f"no store harness for {kind!r}")


_S3_SERVERS = {"s3-moto": "moto_server", "s3-seaweedfs": "seaweed_server"}
