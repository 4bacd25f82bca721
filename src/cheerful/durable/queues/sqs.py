"""SqsQueue: the queue on Amazon SQS or any SQS-compatible service (ElasticMQ, moto...).

One standard SQS queue per message group, each with its own dead-letter queue, all named
from the backend's queue name (see :mod:`.sqs_names`, which finds and creates them). So a
worker that serves one job long-polls that job's queue only, a job's counts and dead
letters are read from its own two queues, an IAM policy can name exactly a job's queues,
and deleting a job deletes its queues. A receive of every group lists the queues (cached
for a few seconds) and polls them in turn. SQS's own redrive policy moves a message to the
dead letters after ``max_receives`` receives; an explicit :meth:`dead_letter` sends a copy
with the reason and deletes the original.

Bodies are bytes; SQS carries text (see :mod:`.sqs_wire`). The size
limit is read from the queue (``MaximumMessageSize``) less :data:`ATTRIBUTE_RESERVE` bytes
for cheerful's attributes. Every call is batched to 10 entries and runs inside
:func:`cheerful.durable.aws.aws_errors`.

What SQS cannot do, and the contract therefore does not promise here: SQS does not tell a
stale receipt from a fresh one (a delete or an extend with an old receipt of a message
that was received again succeeds), and ``delete`` reports True for a message that was
already gone. Results stay exactly-once because the store's write-once records, not the
queue, are the record of what ran.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cheerful.errors import QueueError

from ..aws import NO_QUEUE_CODES, AwsClients, error_code
from .base import BATCH_SIZE, MAX_VISIBILITY_S, DeadLetter, Message, Queue, QueueCounts
from .sqs_names import (
    ATTRIBUTE_RESERVE,
    DEAD,
    DEFAULT_MESSAGE_BYTES,
    RETENTION_S,
    SqsDirectory,
    valid_queue_name,
)
from .sqs_wire import (
    ATTR,
    DIED,
    GROUP,
    ID,
    REASON,
    RECEIVES,
    decoded,
    encoded,
    is_text,
    message_attributes,
    split_receipt,
)

__all__ = ["ATTRIBUTE_RESERVE", "RETENTION_S", "SqsQueue", "valid_queue_name"]

_STALE = {"ReceiptHandleIsInvalid", "MessageNotInflight", "InvalidParameterValue"}
_PURGING = {"AWS.SimpleQueueService.PurgeQueueInProgress", "PurgeQueueInProgress"}
_HELD_MAX = 20_000
_DEAD_READ_S = 30


@dataclass
class _Held:
    id: str
    body: bytes
    group: str
    receive_count: int
    received: float  # time.monotonic() of the receive


class SqsQueue(Queue):
    """The queues named from ``name`` (see the module docstring) on SQS.

    ``client`` is a boto3 SQS client (used in this process only) or None to build one from
    ``clients`` (picklable: the queue can go to another process). ``max_receives`` and
    ``max_message_bytes`` are what :meth:`create` gives new queues; an existing queue's
    own redrive policy and size limit win.
    """

    remote = True

    def __init__(
        self,
        name: str,
        *,
        clients: AwsClients | None = None,
        client: Any = None,
        max_receives: int = 10,
        max_message_bytes: int = DEFAULT_MESSAGE_BYTES,
        **options: Any,
    ) -> None:
        self.names = SqsDirectory(name, clients or AwsClients(), client)
        super().__init__(max_receives=max_receives, max_message_bytes=max_message_bytes, **options)
        self.name = self.names.name
        self.clients = self.names.clients
        self._held: OrderedDict[str, _Held] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SqsQueue({self.name!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_held": OrderedDict(), "_lock": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The boto3 SQS client in use."""
        return self.names.client

    # The limits come from the queue itself.

    @property
    def max_message_bytes(self) -> int:  # type: ignore[override]
        """The longest body: the queue's ``MaximumMessageSize`` less the attribute reserve."""
        return self.names.base_info()["max_message_bytes"]

    @max_message_bytes.setter
    def max_message_bytes(self, value: int) -> None:
        self.names.requested_bytes = value

    @property
    def max_receives(self) -> int:  # type: ignore[override]
        """Receives before SQS moves a message to the dead letters (the redrive policy)."""
        if not self.names.limits_read() and not self.exists():
            return self.names.requested_receives
        return self.names.base_info()["max_receives"]

    @max_receives.setter
    def max_receives(self, value: int) -> None:
        self.names.requested_receives = value

    # Creating and deleting queues.

    def create(self) -> list[str]:
        """Create the base queue and its dead-letter queue if missing; return the names of
        the queues created (none when both exist: running it again changes nothing)."""
        return self.names.create_base()

    def queue_names(self, group: str = "") -> tuple[str, str]:
        """The names of the SQS queue that holds ``group``'s messages (a job's id, or ""
        for the base queue) and of its dead-letter queue (for IAM policies)."""
        name = self.names.queue_name(group)
        return name, name + DEAD

    def exists(self) -> bool:
        """Tell whether the base queue exists."""
        return self.names.url(self.name) is not None

    def _delete_group(self, group: str) -> None:
        name = self.names.queue_name(group)
        if not group:
            self._purge_names([name, name + DEAD])
            return
        for queue in (name, name + DEAD):
            self.names.delete(queue)

    # The hooks.

    def _checked_body(self, body: bytes) -> bytes:
        body = super()._checked_body(body)
        if not is_text(body):
            encoded_size = 4 * math.ceil(len(body) / 3)
            if encoded_size > self.max_message_bytes:
                raise QueueError(
                    f"binary message of {len(body)} bytes is {encoded_size} bytes in base64, "
                    f"over the queue limit of {self.max_message_bytes} bytes; spill the payload "
                    "to the store and send its key"
                )
        return body

    def _send_batch(self, bodies: list[bytes], group: str) -> list[str]:
        url = self.names.group_url(group, create=True)
        entries = [
            {"Id": str(i), **encoded(body, {GROUP: group} if group else {})}
            for i, body in enumerate(bodies)
        ]
        return self._send_entries(url, entries)

    def _wait_and_claim(
        self, n: int, wait_s: float, visibility_s: float, group: str | None
    ) -> list[Message]:
        deadline = time.monotonic() + wait_s
        while True:
            names = self.names.receiving_from(group)
            if len(names) == 1 and wait_s >= 1:  # one queue: SQS's own long poll
                return self._receive_from(names[0], n, visibility_s, min(20, math.ceil(wait_s)))
            got = self._sweep(names, n, visibility_s)
            left = deadline - time.monotonic()
            if got or left <= 0:
                return got
            if not names:
                time.sleep(min(left, 1.0))
                continue
            # Long-poll each queue in turn: one at a time wakes at once on a send to it.
            slice_s = max(1, min(20, math.floor(left / len(names)) or 1))
            for name in names:
                got = self._receive_from(name, n, visibility_s, min(slice_s, math.ceil(left)))
                if got:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    return []

    def _claim(self, n: int, visibility_s: float, group: str | None) -> list[Message]:
        return self._sweep(self.names.receiving_from(group), n, visibility_s)

    def _extend_batch(self, receipts: list[str], visibility_s: float) -> list[bool]:
        # SQS keeps a message at most 12 hours from its receive, extensions included:
        # extend as far as that allows (a chunk held longer is delivered again).
        now, wanted = time.monotonic(), math.ceil(visibility_s)
        seconds = {}
        with self._lock:
            for receipt in receipts:
                held = self._held.get(receipt)
                room = MAX_VISIBILITY_S - (now - held.received) - 2 if held else MAX_VISIBILITY_S
                seconds[split_receipt(receipt)[1]] = max(0, min(wanted, math.floor(room)))
        return self._per_queue(
            receipts,
            "change the visibility of messages",
            lambda url, entries: self.client.change_message_visibility_batch(
                QueueUrl=url,
                Entries=[{**e, "VisibilityTimeout": seconds[e["ReceiptHandle"]]} for e in entries],
            ),
        )

    def _delete_batch(self, receipts: list[str]) -> list[bool]:
        done = self._per_queue(
            receipts,
            "delete messages",
            lambda url, entries: self.client.delete_message_batch(QueueUrl=url, Entries=entries),
        )
        with self._lock:
            for receipt in receipts:
                self._held.pop(receipt, None)
        return done

    def _dead_letter(self, receipt: str, reason: str) -> bool:
        name, _ = split_receipt(receipt)
        with self._lock:
            held = self._held.get(receipt)
        if held is None:
            raise QueueError(
                "dead_letter needs a receipt this queue object received (the body travels "
                "with the copy it sends to the dead letters)"
            )
        if not self._extend_batch([receipt], _DEAD_READ_S)[0]:  # still ours, and kept so
            return False
        attributes = {ID: held.id, REASON: reason[:800], RECEIVES: str(held.receive_count)}
        attributes[DIED] = f"{time.time():.3f}"
        if held.group:
            attributes[GROUP] = held.group
        entry = {"Id": "0", **encoded(held.body, attributes)}
        self._send_entries(self.names.dead_url(name), [entry])
        return self._delete_batch([receipt])[0]

    def _counts(self, group: str | None) -> QueueCounts:
        visible = in_flight = dead = 0
        for name in self.names.names_of(group):
            a = self.names.attributes(name)
            visible += a.get("ApproximateNumberOfMessages", 0)
            visible += a.get("ApproximateNumberOfMessagesDelayed", 0)
            in_flight += a.get("ApproximateNumberOfMessagesNotVisible", 0)
            d = self.names.attributes(name + DEAD)
            dead += d.get("ApproximateNumberOfMessages", 0)
            dead += d.get("ApproximateNumberOfMessagesNotVisible", 0)
        return QueueCounts(visible, in_flight, dead)

    def _dead_letters(self, limit: int, group: str | None = None) -> list[DeadLetter]:
        found = sorted(self._read_dead(group, release=True), key=lambda found: found[1])
        return [letter for letter, _, _, _ in found[:limit]]

    def _redrive(self, ids: list[str] | None, group: str | None = None) -> int:
        chosen = None if ids is None else set(ids)
        moved = 0
        held: list[tuple[str, str]] = []
        try:
            for letter, _, dead_name, handle in self._read_dead(group, release=False):
                if chosen is not None and letter.id not in chosen:
                    held.append((dead_name, handle))
                    continue
                attributes = {ID: letter.id}
                if letter.group:
                    attributes[GROUP] = letter.group
                url = self.names.group_url(letter.group, create=True)
                self._send_entries(url, [{"Id": "0", **encoded(letter.body, attributes)}])
                self._delete_handles(dead_name, [handle])
                moved += 1
        finally:
            self._release_handles(held)
        return moved

    def _purge(self, dead: bool) -> None:
        names = self.names.all_names()
        self._purge_names(names + ([n + DEAD for n in names] if dead else []))

    def _close(self) -> None:
        self.names.forget_all()

    # Calls.

    def _sweep(self, names: list[str], n: int, visibility_s: float) -> list[Message]:
        """Short-poll ``names`` in turn until ``n`` messages are in hand."""
        got: list[Message] = []
        for name in names:
            got += self._receive_from(name, n - len(got), visibility_s, 0)
            if len(got) >= n:
                break
        return got

    def _receive_from(self, name: str, n: int, visibility_s: float, wait: int) -> list[Message]:
        url = self.names.url(name)
        if url is None:
            return []
        with self.names.errors("receive messages from", name):
            try:
                response = self.client.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=min(n, BATCH_SIZE),
                    VisibilityTimeout=math.ceil(visibility_s),
                    WaitTimeSeconds=int(wait),
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                    MessageAttributeNames=[ATTR + "*"],
                )
            except Exception as exc:
                if error_code(exc) not in NO_QUEUE_CODES:
                    raise
                self.names.forget(name)  # deleted meanwhile (a job was deleted)
                return []
        got, now = [], time.monotonic()
        for raw in response.get("Messages", ()):
            attributes = message_attributes(raw)
            message = Message(
                id=attributes.get(ID) or raw["MessageId"],
                body=decoded(raw["Body"], attributes),
                receipt=f"{name} {raw['ReceiptHandle']}",
                receive_count=int(raw.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
                group=attributes.get(GROUP, ""),
            )
            got.append(message)
            with self._lock:
                self._held[message.receipt] = _Held(
                    message.id, message.body, message.group, message.receive_count, now
                )
                while len(self._held) > _HELD_MAX:
                    self._held.popitem(last=False)
        return got

    def _send_entries(self, url: str, entries: list[dict]) -> list[str]:
        ids: dict[str, str] = {}
        pending = entries
        for attempt in range(1, 4):
            with self.names.errors("send messages", url.rsplit("/", 1)[-1]):
                response = self.client.send_message_batch(QueueUrl=url, Entries=pending)
            for ok in response.get("Successful", ()):
                ids[ok["Id"]] = ok["MessageId"]
            failed = response.get("Failed", ())
            if not failed:
                break
            if any(f.get("SenderFault") for f in failed) or attempt == 3:
                f = failed[0]
                raise QueueError(
                    f"SQS refused {len(failed)} of {len(entries)} messages: "
                    f"{f.get('Code')}: {f.get('Message')}"
                )
            retry = {f["Id"] for f in failed}
            pending = [e for e in pending if e["Id"] in retry]
            time.sleep(0.1 * attempt)
        id_of = {e["Id"]: e.get("MessageAttributes", {}).get(ID) for e in entries}
        return [id_of[e["Id"]]["StringValue"] if id_of[e["Id"]] else ids[e["Id"]] for e in entries]

    def _per_queue(self, receipts: list[str], action: str, call: Any) -> list[bool]:
        results = [False] * len(receipts)
        by_queue: dict[str, list[tuple[int, str]]] = {}
        for i, receipt in enumerate(receipts):
            name, handle = split_receipt(receipt)
            by_queue.setdefault(name, []).append((i, handle))
        for name, items in by_queue.items():
            url = self.names.url(name)
            if url is None:  # the queue is gone, and the message with it
                continue
            entries = [
                {"Id": str(j), "ReceiptHandle": handle} for j, (_, handle) in enumerate(items)
            ]
            with self.names.errors(action, name):
                response = call(url, entries)
            for ok in response.get("Successful", ()):
                results[items[int(ok["Id"])][0]] = True
            for failed in response.get("Failed", ()):
                if failed.get("Code") not in _STALE:
                    raise QueueError(
                        f"cannot {action} in {name}: {failed.get('Code')}: {failed.get('Message')}"
                    )
        return results

    def _read_dead(
        self, group: str | None, *, release: bool
    ) -> Iterator[tuple[DeadLetter, float, str, str]]:
        """Every dead letter (of ``group`` or all), with when it died, its dead-letter
        queue and receipt handle; each is hidden while read and, with ``release``, shown
        again."""
        for name in self.names.names_of(group):
            dead = name + DEAD
            url = self.names.url(dead)
            if url is None:
                continue
            # The queue's count says how many to read: short polls until that many are
            # seen, then a long poll or two if SQS's sampling hid some.
            expected = sum(self.names.attributes(dead).values())
            seen: list[str] = []
            try:
                empty = 0
                while len(seen) < expected and empty < 2:
                    with self.names.errors("read the dead letters of", dead):
                        response = self.client.receive_message(
                            QueueUrl=url,
                            MaxNumberOfMessages=BATCH_SIZE,
                            VisibilityTimeout=_DEAD_READ_S,
                            WaitTimeSeconds=1 if empty else 0,
                            MessageSystemAttributeNames=[
                                "ApproximateReceiveCount",
                                "SentTimestamp",
                            ],
                            MessageAttributeNames=[ATTR + "*"],
                        )
                    batch = response.get("Messages", ())
                    if not batch:
                        empty += 1
                        continue
                    for raw in batch:
                        seen.append(raw["ReceiptHandle"])
                        yield *self._letter(raw), dead, raw["ReceiptHandle"]
            finally:
                if release:
                    self._release_handles([(dead, h) for h in seen])

    def _letter(self, raw: dict) -> tuple[DeadLetter, float]:
        attributes = message_attributes(raw)
        receives = attributes.get(RECEIVES)
        count = int(receives) if receives else self.max_receives
        reason = attributes.get(REASON) or (
            f"received {count} times without being deleted (worker died or gave up)"
        )
        letter = DeadLetter(
            id=attributes.get(ID) or raw["MessageId"],
            body=decoded(raw["Body"], attributes),
            reason=reason,
            receive_count=count,
            group=attributes.get(GROUP, ""),
        )
        died = attributes.get(DIED)
        sent = int(raw.get("Attributes", {}).get("SentTimestamp", 0)) / 1000
        return letter, float(died) if died else sent

    def _release_handles(self, handles: list[tuple[str, str]]) -> None:
        for name in {n for n, _ in handles}:
            receipts = [f"{n} {h}" for n, h in handles if n == name]
            for start in range(0, len(receipts), BATCH_SIZE):
                self._extend_batch(receipts[start : start + BATCH_SIZE], 0)

    def _delete_handles(self, name: str, handles: list[str]) -> None:
        self._per_queue(
            [f"{name} {h}" for h in handles],
            "delete dead letters",
            lambda url, entries: self.client.delete_message_batch(QueueUrl=url, Entries=entries),
        )

    def _purge_names(self, names: list[str]) -> None:
        for name in names:
            url = self.names.url(name)
            if url is None:
                continue
            with self.names.errors("purge", name):
                try:
                    self.client.purge_queue(QueueUrl=url)
                    continue
                except Exception as exc:
                    if error_code(exc) not in _PURGING:
                        raise
            while batch := self._receive_from(name, BATCH_SIZE, 60, 0):  # purged < 60 s ago
                self._delete_batch([m.receipt for m in batch])
