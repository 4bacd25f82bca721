"""Fixtures for the contract suites: one harness per implementation of a protocol.

To run a suite against a new implementation, add its name to ``QUEUE_KINDS`` or
``STORE_KINDS`` and a branch to the matching ``_make_*_harness``; the tests do not change.
A harness makes fresh, empty instances and says how to let time pass for them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cheerful.queues import Queue
from cheerful.queues.sqlite import SqliteQueue
from cheerful.stores import Store
from cheerful.stores.local import LocalStore

QUEUE_KINDS = ["sqlite"]
STORE_KINDS = ["local"]


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
    harness = _make_queue_harness(request.param, tmp_path)
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
    harness = _make_store_harness(request.param, tmp_path)
    try:
        yield harness
    finally:
        for store in harness.made:
            store.close()


@pytest.fixture
def store(store_factory: StoreHarness) -> Store:
    """A fresh, empty store."""
    return store_factory.make()


def _make_queue_harness(kind: str, tmp_path: Path) -> QueueHarness:
    if kind == "sqlite":
        clock = ManualClock()
        counter = iter(range(1_000_000))

        def make(real_time: bool, **options: object) -> Queue:
            path = tmp_path / f"queue{next(counter)}.db"
            return SqliteQueue(path, clock=time.time if real_time else clock, **options)

        def check(queue: Queue) -> None:
            assert queue.integrity_check() == "ok"

        return QueueHarness(kind, make, clock.advance, check)
    raise ValueError(f"no queue harness for {kind!r}")


def _make_store_harness(kind: str, tmp_path: Path) -> StoreHarness:
    if kind == "local":
        counter = iter(range(1_000_000))
        return StoreHarness(kind, lambda: LocalStore(tmp_path / f"store{next(counter)}"))
    raise ValueError(f"no store harness for {kind!r}")
