"""The queue contract (DESIGN.md, "the queue contract"), run against every queue kind."""

from __future__ import annotations

import multiprocessing
import pickle
import threading
import time
from pathlib import Path

import pytest

from cheerful.durable.queues import DeadLetter, Message, Queue, QueueCounts
from cheerful.errors import ConfigError, QueueError

GENEROUS_S = 10.0  # an upper bound that only a hang would exceed, even on a busy machine


def receive_all(queue: Queue, visibility_s: float = 60.0) -> list[Message]:
    """Receive until the queue hands out nothing more."""
    got: list[Message] = []
    while batch := queue.receive(10, visibility_s=visibility_s):
        got += batch
    return got


def receive_one(queue: Queue, visibility_s: float = 30.0) -> Message:
    """Receive exactly one message."""
    (message,) = queue.receive(1, visibility_s=visibility_s)
    return message


# Sending and limits


def test_send_returns_one_id_per_body(queue: Queue) -> None:
    ids = queue.send([b"a", b"b", b"c"])
    assert len(ids) == len(set(ids)) == 3
    assert all(isinstance(id_, str) and id_ for id_ in ids)
    assert queue.counts() == QueueCounts(visible=3, in_flight=0, dead=0)


def test_send_nothing_is_a_no_op(queue: Queue) -> None:
    assert queue.send([]) == []
    assert queue.counts() == QueueCounts(0, 0, 0)


def test_send_more_than_a_batch(queue: Queue) -> None:
    bodies = [f"body {i}".encode() for i in range(25)]
    ids = queue.send(bodies)
    got = receive_all(queue)
    assert len(ids) == len(set(ids)) == 25
    assert sorted(m.body for m in got) == sorted(bodies)
    assert {m.id for m in got} == set(ids)


def test_receive_more_than_a_batch_at_once(queue: Queue) -> None:
    queue.send([bytes([i]) for i in range(25)])
    got = queue.receive(25)
    assert 1 <= len(got) <= 25
    assert len(got) + len(receive_all(queue)) == 25


def test_body_round_trips_as_bytes(queue: Queue) -> None:
    body = bytes(range(256)) * 4
    (id_,) = queue.send([body])
    message = receive_one(queue)
    assert (message.id, message.body, message.receive_count) == (id_, body, 1)
    assert isinstance(message.receipt, str) and message.receipt


def test_body_over_the_limit_is_refused_with_a_hint_to_spill(queue_factory) -> None:
    queue = queue_factory.make(max_message_bytes=1024)
    queue.send([b"x" * 1024])
    with pytest.raises(QueueError, match="store"):
        queue.send([b"small", b"x" * 1025])
    assert queue.counts().visible == 1  # nothing of the refused call was sent


def test_default_limit_is_256_kib(queue: Queue) -> None:
    assert queue.max_message_bytes == 256 * 1024
    with pytest.raises(QueueError):
        queue.send([b"x" * (256 * 1024 + 1)])


@pytest.mark.parametrize("bodies", [["text"], [None], b"bytes-not-a-list", "str"])
def test_send_refuses_what_is_not_bytes(queue: Queue, bodies) -> None:
    with pytest.raises(ConfigError):
        queue.send(bodies)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_messages": 0},
        {"max_messages": 1.5},
        {"wait_s": -1},
        {"wait_s": 20.5},
        {"visibility_s": -1},
        {"visibility_s": 43200.5},
        {"visibility_s": "30"},
    ],
)
def test_receive_validates_its_arguments(queue: Queue, kwargs) -> None:
    with pytest.raises(ConfigError):
        queue.receive(**kwargs)


def test_limits_at_the_edge_are_accepted(queue: Queue) -> None:
    queue.send([b"m"])
    message = receive_one(queue, visibility_s=43200)
    queue.extend(message.receipt, 43200)
    assert queue.receive(wait_s=0) == []


def test_extend_validates_visibility(queue: Queue) -> None:
    queue.send([b"m"])
    message = receive_one(queue)
    with pytest.raises(ConfigError):
        queue.extend([message.receipt], 43201)


# Visibility


def test_received_message_is_invisible_then_reappears(queue_factory) -> None:
    queue = queue_factory.make()
    queue.send([b"m"])
    first = receive_one(queue, visibility_s=5)
    assert queue.receive() == []
    assert queue.counts() == QueueCounts(visible=0, in_flight=1, dead=0)
    queue_factory.advance(6)
    again = receive_one(queue, visibility_s=5)
    assert (again.id, again.body, again.receive_count) == (first.id, b"m", 2)
    assert again.receipt != first.receipt


def test_extend_keeps_it_hidden(queue_factory) -> None:
    queue = queue_factory.make()
    queue.send([b"m"])
    message = receive_one(queue, visibility_s=2)
    queue.extend([message.receipt], 60)
    queue_factory.advance(5)
    assert queue.receive() == []
    assert queue.counts().in_flight == 1


def test_extend_is_batched(queue_factory) -> None:
    queue = queue_factory.make()
    queue.send([bytes([i]) for i in range(15)])
    held = receive_all(queue, visibility_s=2)
    queue.extend([m.receipt for m in held], 60)
    queue_factory.advance(5)
    assert queue.receive() == []


def test_release_makes_it_visible_at_once(queue: Queue) -> None:
    queue.send([b"m"])
    message = receive_one(queue, visibility_s=600)
    assert queue.release([message.receipt]) == [True]
    again = receive_one(queue)
    assert (again.id, again.receive_count) == (message.id, 2)


# Delete and stale receipts


def test_delete_removes_and_is_idempotent(queue_factory) -> None:
    queue = queue_factory.make()
    queue.send([b"a", b"b"])
    held = receive_all(queue)
    receipts = [m.receipt for m in held]
    assert queue.delete(receipts) == [True, True]
    again = queue.delete(receipts)  # a no-op; SQS cannot tell that nothing was deleted
    assert again == [False, False] or not queue_factory.exact_receipts
    assert queue.counts() == QueueCounts(0, 0, 0)


def test_delete_more_than_a_batch(queue: Queue) -> None:
    queue.send([bytes([i]) for i in range(23)])
    held = receive_all(queue)
    assert queue.delete([m.receipt for m in held]) == [True] * 23
    assert queue.counts() == QueueCounts(0, 0, 0)


def test_a_stale_receipt_cannot_touch_the_new_holder_s_claim(queue_factory) -> None:
    if not queue_factory.exact_receipts:
        pytest.skip(f"{queue_factory.kind} accepts a stale receipt as a fresh one (as SQS does)")
    queue = queue_factory.make()
    queue.send([b"m"])
    old = receive_one(queue, visibility_s=5)
    queue_factory.advance(6)
    new = receive_one(queue, visibility_s=60)
    with pytest.raises(QueueError, match="stale"):
        queue.extend([old.receipt], 600)
    assert queue.delete([old.receipt]) == [False]
    assert queue.release([old.receipt]) == [False]
    assert queue.dead_letter(old.receipt, "no") is False
    assert queue.counts() == QueueCounts(visible=0, in_flight=1, dead=0)
    assert queue.delete([new.receipt]) == [True]


def test_extend_extends_the_fresh_receipts_before_raising_for_stale_ones(queue_factory) -> None:
    queue = queue_factory.make()
    queue.send([b"a", b"b"])
    a, b = receive_all(queue, visibility_s=5)
    assert queue.delete([b.receipt]) == [True]
    with pytest.raises(QueueError, match="stale"):
        queue.extend([a.receipt, b.receipt], 60)
    queue_factory.advance(10)
    assert queue.receive() == []


def test_a_holder_whose_visibility_lapsed_may_still_delete(queue_factory) -> None:
    queue = queue_factory.make()
    queue.send([b"m"])
    message = receive_one(queue, visibility_s=1)
    queue_factory.advance(2)
    assert queue.delete([message.receipt]) == [True]
    assert queue.counts() == QueueCounts(0, 0, 0)


# Dead letters


def test_dead_letter_after_max_receives_with_reason(queue_factory) -> None:
    queue = queue_factory.make(max_receives=2)
    (id_,) = queue.send([b"poison"])
    for count in (1, 2):
        assert receive_one(queue, visibility_s=1).receive_count == count
        queue_factory.advance(2)
    assert queue.receive() == []
    assert queue.counts() == QueueCounts(visible=0, in_flight=0, dead=1)
    (dead,) = queue.dead_letters()
    assert dead == DeadLetter(
        id=id_,
        body=b"poison",
        reason="received 2 times without being deleted (worker died or gave up)",
        receive_count=2,
    )


def test_spent_messages_do_not_starve_a_receive(queue_factory) -> None:
    queue = queue_factory.make(max_receives=1)
    queue.send([b"old"] * 12)
    receive_all(queue, visibility_s=1)
    queue_factory.advance(2)
    queue.send([b"new"])
    assert [m.body for m in queue.receive(10)] == [b"new"]
    assert queue.counts() == QueueCounts(visible=0, in_flight=1, dead=12)


def test_dead_letter_now_with_a_reason(queue_factory) -> None:
    queue = queue_factory.make()
    (id_,) = queue.send([b"garbage"])
    message = receive_one(queue)
    assert queue.dead_letter(message.receipt, "malformed: not a chunk") is True
    assert queue.counts() == QueueCounts(visible=0, in_flight=0, dead=1)
    assert queue.dead_letters() == [DeadLetter(id_, b"garbage", "malformed: not a chunk", 1)]
    assert queue.delete([message.receipt]) == [False] or not queue_factory.exact_receipts
    assert queue.counts() == QueueCounts(visible=0, in_flight=0, dead=1)


def test_dead_letters_limit(queue: Queue) -> None:
    queue.send([bytes([i]) for i in range(5)])
    for message in receive_all(queue):
        queue.dead_letter(message.receipt, "bad")
    assert len(queue.dead_letters(limit=3)) == 3
    assert len(queue.dead_letters()) == 5
    with pytest.raises(ConfigError):
        queue.dead_letters(limit=0)


def test_redrive_all_dead_letters(queue_factory) -> None:
    queue = queue_factory.make(max_receives=1)
    queue.send([b"a", b"b"])
    receive_all(queue, visibility_s=1)
    queue_factory.advance(2)
    assert queue.receive() == []
    assert queue.redrive_dead() == 2
    assert queue.counts() == QueueCounts(visible=2, in_flight=0, dead=0)
    got = receive_all(queue)
    assert sorted(m.body for m in got) == [b"a", b"b"]
    assert [m.receive_count for m in got] == [1, 1]


def test_redrive_chosen_dead_letters(queue: Queue) -> None:
    queue.send([b"a", b"b", b"c"])
    for message in receive_all(queue):
        queue.dead_letter(message.receipt, "bad")
    chosen = [d.id for d in queue.dead_letters() if d.body != b"b"]
    assert queue.redrive_dead(chosen) == 2
    assert queue.redrive_dead(chosen) == 0
    assert [d.body for d in queue.dead_letters()] == [b"b"]
    assert sorted(m.body for m in receive_all(queue)) == [b"a", b"c"]


# Counts, purge, pickling


def test_counts_track_every_state(queue: Queue) -> None:
    queue.send([bytes([i]) for i in range(6)])
    held = queue.receive(3)
    queue.dead_letter(held[0].receipt, "bad")
    assert queue.counts() == QueueCounts(visible=3, in_flight=2, dead=1)


def test_purge(queue: Queue) -> None:
    queue.send([b"a", b"b", b"c"])
    held = queue.receive(2)
    queue.dead_letter(held[0].receipt, "bad")
    queue.purge()
    assert queue.counts() == QueueCounts(visible=0, in_flight=0, dead=1)
    queue.purge(dead=True)
    assert queue.counts() == QueueCounts(0, 0, 0)


def test_a_pickled_queue_is_the_same_queue(queue_factory) -> None:
    queue = queue_factory.make(real_time=True)
    queue.send([b"m"])
    with pickle.loads(pickle.dumps(queue)) as copy:
        assert receive_one(copy).body == b"m"
    assert queue.counts().in_flight == 1


def test_context_manager_closes(queue_factory) -> None:
    with queue_factory.make() as queue:
        queue.send([b"m"])
    assert queue.counts().visible == 1  # a closed queue reconnects when used again


# Long polling


def test_long_poll_returns_empty_after_wait_s(queue: Queue) -> None:
    start = time.monotonic()
    assert queue.receive(wait_s=0.5) == []
    assert 0.45 <= time.monotonic() - start < GENEROUS_S


def test_long_poll_wakes_early_when_a_message_arrives(queue_factory) -> None:
    queue = queue_factory.make(real_time=True)
    sender = threading.Timer(0.3, queue.send, args=([b"late"],))
    start = time.monotonic()
    sender.start()
    try:
        got = queue.receive(wait_s=15)
    finally:
        sender.join()
    assert [m.body for m in got] == [b"late"]
    assert time.monotonic() - start < GENEROUS_S


def test_long_poll_wakes_for_a_send_from_another_process(queue_factory) -> None:
    queue = queue_factory.make(real_time=True)
    sender = multiprocessing.get_context("fork").Process(target=_send_later, args=(queue,))
    start = time.monotonic()
    sender.start()
    got = queue.receive(wait_s=15)
    sender.join(GENEROUS_S)
    assert [m.body for m in got] == [b"from afar"]
    assert time.monotonic() - start < GENEROUS_S
    assert sender.exitcode == 0


def _send_later(queue: Queue) -> None:
    time.sleep(0.3)
    queue.send([b"from afar"])


# Message groups


def test_a_group_receives_only_its_own_messages(queue: Queue) -> None:
    queue.send([b"a1", b"a2"], group="a")
    queue.send([b"b1"], group="b")
    queue.send([b"none"])
    got = queue.receive(10, group="a")
    assert sorted(m.body for m in got) == [b"a1", b"a2"]
    assert {m.group for m in got} == {"a"}
    assert queue.receive(10, group="a") == []
    assert queue.receive(10, group="c") == []
    assert [m.body for m in queue.receive(10, group="")] == [b"none"]
    (b1,) = queue.receive(10)  # every group
    assert (b1.body, b1.group) == (b"b1", "b")


def test_receive_without_a_group_takes_every_group(queue: Queue) -> None:
    queue.send([b"a"], group="a")
    queue.send([b"b"], group="b")
    queue.send([b"plain"])
    got = receive_all(queue)
    assert sorted((m.body, m.group) for m in got) == [(b"a", "a"), (b"b", "b"), (b"plain", "")]


def test_receives_in_one_group_leave_the_others_counts_alone(queue_factory) -> None:
    queue = queue_factory.make(max_receives=3)
    (kept,) = queue.send([b"b"], group="b")
    queue.send([b"a"], group="a")
    for count in (1, 2, 3):
        assert receive_one_of(queue, "a").receive_count == count
        queue_factory.advance(2)
    for _ in range(5):  # "a" is spent now: a receive buries it, then finds nothing
        assert queue.receive(10, visibility_s=1, group="a") == []
    assert queue.counts(group="a") == QueueCounts(visible=0, in_flight=0, dead=1)
    assert queue.counts(group="b") == QueueCounts(visible=1, in_flight=0, dead=0)
    assert queue.counts() == QueueCounts(visible=1, in_flight=0, dead=1)
    message = receive_one_of(queue, "b")
    assert (message.id, message.receive_count) == (kept, 1)


def test_dead_letters_and_redrive_keep_the_group(queue_factory) -> None:
    queue = queue_factory.make(max_receives=1)
    (a,) = queue.send([b"a"], group="a")
    (b,) = queue.send([b"b"], group="b")
    receive_all(queue, visibility_s=1)
    queue_factory.advance(2)
    assert queue.receive() == []
    assert sorted((d.id, d.group) for d in queue.dead_letters()) == sorted([(a, "a"), (b, "b")])
    assert queue.redrive_dead([a]) == 1
    assert queue.redrive_dead() == 1
    assert queue.receive(10, group="c") == []
    (again,) = queue.receive(10, group="a")
    assert (again.id, again.group, again.receive_count) == (a, "a", 1)
    message = receive_one_of(queue, "b")
    assert queue.dead_letter(message.receipt, "bad") is True
    assert queue.dead_letters() == [DeadLetter(b, b"b", "bad", 1, "b")]


def test_long_poll_in_a_group_wakes_for_its_group_only(queue_factory) -> None:
    queue = queue_factory.make(real_time=True)
    other = threading.Timer(0.1, queue.send, args=([b"other"],), kwargs={"group": "b"})
    mine = threading.Timer(0.6, queue.send, args=([b"mine"],), kwargs={"group": "a"})
    start = time.monotonic()
    other.start()
    mine.start()
    try:
        got = queue.receive(wait_s=15, group="a")
    finally:
        other.join()
        mine.join()
    assert [m.body for m in got] == [b"mine"]
    assert 0.5 <= time.monotonic() - start < GENEROUS_S
    assert queue.counts(group="b").visible == 1
    start = time.monotonic()
    assert queue.receive(wait_s=0.3, group="a") == []  # "b" waits, "a" has nothing
    assert time.monotonic() - start >= 0.25


@pytest.mark.parametrize("group", [None, 7, b"a", "x" * 129])
def test_send_validates_the_group(queue: Queue, group) -> None:
    with pytest.raises(ConfigError):
        queue.send([b"m"], group=group)
    assert queue.counts() == QueueCounts(0, 0, 0)


@pytest.mark.parametrize("group", [7, b"a", "x" * 129])
def test_receive_and_counts_validate_the_group(queue: Queue, group) -> None:
    with pytest.raises(ConfigError):
        queue.receive(group=group)
    with pytest.raises(ConfigError):
        queue.counts(group=group)


def test_a_group_of_128_characters_is_accepted(queue: Queue) -> None:
    group = "g" * 128
    queue.send([b"m"], group=group)
    assert receive_one_of(queue, group).group == group


def receive_one_of(queue: Queue, group: str) -> Message:
    """Receive exactly one message of ``group``, visible again after 1 s."""
    (message,) = queue.receive(1, visibility_s=1, group=group)
    return message


# Many processes at once


def test_many_processes_lose_no_message(queue_factory, tmp_path: Path) -> None:
    """Four processes send and drain one queue at once: every message is received, once
    each where the queue promises it (``exactly_once``), and deleted."""
    procs, per_proc = 4, queue_factory.many
    queue = queue_factory.make(real_time=True)
    queue.counts()  # connect before forking: children must not reuse this connection
    context = multiprocessing.get_context("fork")
    deleted = context.Value("i", 0)
    workers = [
        context.Process(
            target=_send_and_drain,
            args=(queue, w, per_proc, procs * per_proc, deleted, tmp_path),
        )
        for w in range(procs)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0] * procs
    got = [line for w in range(procs) for line in _lines(tmp_path / f"drained{w}")]
    sent = sorted(f"{w}-{i}" for w in range(procs) for i in range(per_proc))
    if queue_factory.exactly_once:
        assert sorted(got) == sent
    else:  # at least once: nothing lost, nothing foreign, a rare duplicate allowed
        assert sorted(set(got)) == sent and len(got) - len(sent) <= procs
    assert queue.counts() == QueueCounts(0, 0, 0)
    queue_factory.check_integrity(queue)


def _send_and_drain(queue: Queue, worker: int, n: int, total: int, deleted, out: Path) -> None:
    got = []
    queue.send([f"{worker}-{i}".encode() for i in range(n)])
    deadline = time.monotonic() + 50
    while deleted.value < total and time.monotonic() < deadline:
        held = queue.receive(10, wait_s=0.2, visibility_s=300)
        assert all(queue.delete([m.receipt for m in held]))
        got += [m.body.decode() for m in held]
        with deleted.get_lock():
            deleted.value += len(held)
    (out / f"drained{worker}").write_text("\n".join(got))


def _lines(path: Path) -> list[str]:
    text = path.read_text()
    return text.split("\n") if text else []


# The embedded queue only: a file made before message groups existed


_OLD_SCHEMA = """
CREATE TABLE messages (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, body BLOB NOT NULL,
    visible_at REAL NOT NULL, receive_count INTEGER NOT NULL DEFAULT 0, receipt TEXT);
CREATE INDEX messages_by_visibility ON messages (visible_at);
CREATE TABLE dead (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, body BLOB NOT NULL,
    reason TEXT NOT NULL, receive_count INTEGER NOT NULL, died_at REAL NOT NULL);
INSERT INTO messages (id, body, visible_at) VALUES ('old', X'6F6C64', 0);
INSERT INTO dead (id, body, reason, receive_count, died_at) VALUES ('gone', X'', 'bad', 3, 0);
"""


def test_sqlite_adds_the_group_column_to_an_old_file(tmp_path: Path) -> None:
    import sqlite3

    from cheerful.durable.queues.sqlite import SqliteQueue

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(_OLD_SCHEMA)
    db.close()
    with SqliteQueue(path) as queue, SqliteQueue(path) as again:  # opening twice is fine
        assert queue.dead_letters() == [DeadLetter("gone", b"", "bad", 3, "")]
        queue.send([b"new"], group="g")
        (old,) = again.receive(10, group="")
        assert (old.id, old.body, old.group) == ("old", b"old", "")
        assert [m.body for m in queue.receive(10, group="g")] == [b"new"]
        plan = queue._db().execute(
            "EXPLAIN QUERY PLAN SELECT seq FROM messages WHERE grp = ? AND visible_at <= ? "
            "ORDER BY visible_at LIMIT 10",
            ("g", 0.0),
        )
        assert "messages_by_group" in " ".join(str(row) for row in plan)
        assert queue.integrity_check() == "ok"


# One group's leftovers (a deleted job)


def test_dead_letters_and_redrive_of_one_group(queue: Queue) -> None:
    queue.send([b"a"], group="a")
    queue.send([b"b"], group="b")
    for message in receive_all(queue):
        queue.dead_letter(message.receipt, "bad")
    assert [d.body for d in queue.dead_letters(group="a")] == [b"a"]
    assert queue.redrive_dead(group="b") == 1
    assert [d.body for d in queue.dead_letters()] == [b"a"]
    assert [m.body for m in queue.receive(10, group="b")] == [b"b"]


def test_delete_group_leaves_the_other_groups(queue: Queue) -> None:
    queue.send([b"a1", b"a2", b"a3"], group="a")
    queue.send([b"b"], group="b")
    held = queue.receive(2, group="a")
    queue.dead_letter(held[0].receipt, "bad")
    queue.delete_group("a")
    assert queue.counts(group="a") == QueueCounts(0, 0, 0)
    assert queue.counts() == QueueCounts(visible=1, in_flight=0, dead=0)
    assert queue.receive(10, group="a") == []
    queue.send([b"again"], group="a")  # the group can be used again
    assert [m.body for m in queue.receive(10, group="a")] == [b"again"]
