"""SqsQueue: the queue on Amazon SQS or any SQS-compatible service (ElasticMQ, moto...).

One standard SQS queue per message group, each with its own dead-letter queue, all named
from the backend's queue name ``Q`` (the group "" is ``Q`` itself)::

    Q                       the base queue (group "")      Q--dead   its dead letters
    Q--<group>-<hash8>      the queue of one group (job)   ...--dead its dead letters

So a worker that serves one job long-polls that job's queue only, a job's counts and dead
letters are read from its own two queues, an IAM policy can name exactly a job's queues,
and deleting a job deletes its queues. A receive of every group lists the queues (cached
for a few seconds) and polls them in turn. SQS's own redrive policy moves a message to the
dead letters after ``max_receives`` receives; an explicit :meth:`dead_letter` sends a copy
with the reason and deletes the original.

Bodies are bytes; SQS carries text, so a body that is plain ASCII travels as it is and
any other body as base64 (flagged by a message attribute; its size counts 4/3). The size
limit is read from the queue (``MaximumMessageSize``) less :data:`ATTRIBUTE_RESERVE` bytes
for cheerful's attributes. Every call is batched to 10 entries and runs inside
:func:`cheerful.aws.aws_errors`.

What SQS cannot do, and the contract therefore does not promise here: SQS does not tell a
stale receipt from a fresh one (a delete or an extend with an old receipt of a message
that was received again succeeds), and ``delete`` reports True for a message that was
already gone. Results stay exactly-once because the store's write-once records, not the
queue, are the record of what ran.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cheerful.aws import NO_QUEUE_CODES, AwsClients, aws_errors, error_code
from cheerful.errors import ConfigError, QueueError
from cheerful.queues.base import (
    BATCH_SIZE,
    MAX_VISIBILITY_S,
    DeadLetter,
    Message,
    Queue,
    QueueCounts,
)

__all__ = ["ATTRIBUTE_RESERVE", "RETENTION_S", "SqsQueue", "valid_queue_name"]

ATTRIBUTE_RESERVE = 1024
"""Bytes of a queue's ``MaximumMessageSize`` kept for cheerful's message attributes."""
RETENTION_S = 14 * 24 * 3600
"""How long SQS keeps a message (its maximum): a job may wait in the queue two weeks."""
DEFAULT_MESSAGE_BYTES = 256 * 1024
"""``MaximumMessageSize`` of the queues ``cheerful init`` creates."""

_DEAD = "--dead"
_GROUP_SEP = "--"
_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")
_ATTR = "cheerful."
_ENCODING, _GROUP, _ID, _REASON, _RECEIVES, _DIED = (
    _ATTR + name for name in ("encoding", "group", "id", "reason", "receives", "died")
)
_STALE = {"ReceiptHandleIsInvalid", "MessageNotInflight", "InvalidParameterValue"}
_TEXT = re.compile(rb"[\t\n\x20-\x7e]*")
_LIST_TTL_S = 5.0
_HELD_MAX = 20_000
_DEAD_READ_S = 30


def valid_queue_name(name: str) -> str:
    """Return ``name`` if it can name a backend's base queue, else raise ConfigError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or _GROUP_SEP in name:
        raise ConfigError(
            f"queue name {name!r} is not valid: use 1 to 40 letters, digits, '-' or '_', "
            "without '--' (cheerful appends '--<job>' and '--dead' to it)"
        )
    return name


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
        self._info: dict[str, Any] | None = None
        super().__init__(max_receives=max_receives, max_message_bytes=max_message_bytes, **options)
        self.name = valid_queue_name(name)
        self.clients = clients or AwsClients()
        self._client = client
        self._urls: dict[str, str] = {}
        self._listed: tuple[float, list[str]] = (0.0, [])
        self._held: OrderedDict[str, _Held] = OrderedDict()
        self._rotation = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SqsQueue({self.name!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_client=None, _held=OrderedDict(), _lock=None, _listed=(0.0, []))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The boto3 SQS client in use."""
        return self._client if self._client is not None else self.clients.client("sqs")

    # The limits come from the queue itself.

    @property
    def max_message_bytes(self) -> int:  # type: ignore[override]
        """The longest body: the queue's ``MaximumMessageSize`` less the attribute reserve."""
        return self._base_info()["max_message_bytes"]

    @max_message_bytes.setter
    def max_message_bytes(self, value: int) -> None:
        self._requested_bytes = value

    @property
    def max_receives(self) -> int:  # type: ignore[override]
        """Receives before SQS moves a message to the dead letters (the redrive policy)."""
        if self._info is None and not self.exists():
            return self._requested_receives
        return self._base_info()["max_receives"]

    @max_receives.setter
    def max_receives(self, value: int) -> None:
        self._requested_receives = value

    # Creating and deleting queues.

    def create(self) -> list[str]:
        """Create the base queue and its dead-letter queue if missing; return the names of
        the queues created (none when both exist: running it again changes nothing)."""
        created = self._ensure(self.name, self._requested_receives, self._requested_bytes)
        self._info = None
        return created

    def queue_names(self, group: str = "") -> tuple[str, str]:
        """The names of the SQS queue that holds ``group``'s messages (a job's id, or ""
        for the base queue) and of its dead-letter queue (for IAM policies)."""
        name = self._queue_name(group)
        return name, name + _DEAD

    def exists(self) -> bool:
        """Tell whether the base queue exists."""
        return self._url(self.name) is not None

    def _delete_group(self, group: str) -> None:
        name = self._queue_name(group)
        if not group:
            self._purge_names([name, name + _DEAD])
            return
        for queue in (name, name + _DEAD):
            url = self._url(queue)
            if url is not None:
                with self._errors("delete the queue", queue):
                    try:
                        self.client.delete_queue(QueueUrl=url)
                    except Exception as exc:
                        if error_code(exc) not in NO_QUEUE_CODES:
                            raise
                self._urls.pop(queue, None)
        self._listed = (0.0, [])

    # The hooks.

    def _checked_body(self, body: bytes) -> bytes:
        body = super()._checked_body(body)
        if not _TEXT.fullmatch(body):
            encoded = 4 * math.ceil(len(body) / 3)
            if encoded > self.max_message_bytes:
                raise QueueError(
                    f"binary message of {len(body)} bytes is {encoded} bytes in base64, over "
                    f"the queue limit of {self.max_message_bytes} bytes; spill the payload to "
                    "the store and send its key"
                )
        return body

    def _send_batch(self, bodies: list[bytes], group: str) -> list[str]:
        url = self._group_url(group, create=True)
        entries = [
            {"Id": str(i), **_encoded(body, {_GROUP: group} if group else {})}
            for i, body in enumerate(bodies)
        ]
        return self._send_entries(url, entries, group)

    def _wait_and_claim(
        self, n: int, wait_s: float, visibility_s: float, group: str | None
    ) -> list[Message]:
        deadline = time.monotonic() + wait_s
        while True:
            names = self._receiving_from(group)
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
        return self._sweep(self._receiving_from(group), n, visibility_s)

    def _extend_batch(self, receipts: list[str], visibility_s: float) -> list[bool]:
        # SQS keeps a message at most 12 hours from its receive, extensions included:
        # extend as far as that allows (a chunk held longer is delivered again).
        now, wanted = time.monotonic(), math.ceil(visibility_s)
        seconds = {}
        with self._lock:
            for receipt in receipts:
                held = self._held.get(receipt)
                room = MAX_VISIBILITY_S - (now - held.received) - 2 if held else MAX_VISIBILITY_S
                seconds[_split(receipt)[1]] = max(0, min(wanted, math.floor(room)))
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
        name, handle = _split(receipt)
        with self._lock:
            held = self._held.get(receipt)
        if held is None:
            raise QueueError(
                "dead_letter needs a receipt this queue object received (the body travels "
                "with the copy it sends to the dead letters)"
            )
        if not self._extend_batch([receipt], _DEAD_READ_S)[0]:  # still ours, and kept so
            return False
        attributes = {_ID: held.id, _REASON: reason[:800], _RECEIVES: str(held.receive_count)}
        attributes[_DIED] = f"{time.time():.3f}"
        if held.group:
            attributes[_GROUP] = held.group
        entry = {"Id": "0", **_encoded(held.body, attributes)}
        self._send_entries(self._dead_url(name), [entry], held.group)
        return self._delete_batch([receipt])[0]

    def _counts(self, group: str | None) -> QueueCounts:
        names = [self._queue_name(group)] if group is not None else self._all_names()
        visible = in_flight = dead = 0
        for name in names:
            a = self._attributes(name)
            visible += a.get("ApproximateNumberOfMessages", 0)
            visible += a.get("ApproximateNumberOfMessagesDelayed", 0)
            in_flight += a.get("ApproximateNumberOfMessagesNotVisible", 0)
            d = self._attributes(name + _DEAD)
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
                attributes = {_ID: letter.id}
                if letter.group:
                    attributes[_GROUP] = letter.group
                url = self._group_url(letter.group, create=True)
                self._send_entries(url, [{"Id": "0", **_encoded(letter.body, attributes)}], "")
                self._delete_handles(dead_name, [handle])
                moved += 1
        finally:
            self._release_handles(held)
        return moved

    def _purge(self, dead: bool) -> None:
        names = self._all_names()
        self._purge_names(names + ([n + _DEAD for n in names] if dead else []))

    def _close(self) -> None:
        self._urls.clear()

    # Names and URLs.

    def _queue_name(self, group: str) -> str:
        if not group:
            return self.name
        digest = hashlib.sha256(group.encode()).hexdigest()[:8]
        room = 80 - len(_DEAD) - len(self.name) - len(_GROUP_SEP) - 1 - len(digest)
        readable = re.sub(r"[^A-Za-z0-9_-]", "_", group)[:room].replace(_GROUP_SEP, "-_")
        return f"{self.name}{_GROUP_SEP}{readable}-{digest}"

    def _url(self, name: str) -> str | None:
        url = self._urls.get(name)
        if url is not None:
            return url
        with self._errors("look up the queue", name):
            try:
                url = self.client.get_queue_url(QueueName=name)["QueueUrl"]
            except Exception as exc:
                if error_code(exc) in NO_QUEUE_CODES:
                    return None
                raise
        self._urls[name] = url
        return url

    def _dead_url(self, name: str) -> str:
        url = self._url(name + _DEAD)
        if url is None:
            raise QueueError(
                f"the dead-letter queue {name + _DEAD} is missing; run `cheerful init --backend "
                "URL` again to create it"
            )
        return url

    def _group_url(self, group: str, *, create: bool) -> str | None:
        name = self._queue_name(group)
        url = self._url(name)
        if url is None and create:
            if group:
                info = self._base_info()
                self._ensure(name, info["max_receives"], info["queue_bytes"] - ATTRIBUTE_RESERVE)
                self._listed = (0.0, [])
            url = self._url(name)
            if url is None:
                raise QueueError(
                    f"queue {self.name} does not exist; run `cheerful init --backend URL` "
                    "to create it"
                )
        return url

    def _group_names(self) -> list[str]:
        """The queues of every group but "" (cached for a few seconds)."""
        stamp, names = self._listed
        if time.monotonic() - stamp < _LIST_TTL_S:
            return names
        prefix = self.name + _GROUP_SEP
        names = []
        with self._errors("list the queues", prefix + "*"):
            pages = self.client.get_paginator("list_queues").paginate(
                QueueNamePrefix=prefix, PaginationConfig={"PageSize": 1000}
            )
            for page in pages:
                for url in page.get("QueueUrls", ()):
                    name = url.rsplit("/", 1)[-1]
                    if not name.endswith(_DEAD):
                        names.append(name)
                        self._urls[name] = url
        self._listed = (time.monotonic(), sorted(names))
        return self._listed[1]

    def _all_names(self) -> list[str]:
        return [self.name, *self._group_names()]

    def _receiving_from(self, group: str | None) -> list[str]:
        if group is not None:
            name = self._queue_name(group)
            return [name] if self._url(name) is not None else []
        names = [n for n in self._all_names() if self._url(n) is not None]
        if len(names) > 1:  # start where the last sweep stopped: no group starves
            self._rotation = (self._rotation + 1) % len(names)
            names = names[self._rotation :] + names[: self._rotation]
        return names

    def _base_info(self) -> dict[str, Any]:
        if self._info is None:
            url = self._url(self.name)
            if url is None:
                raise QueueError(
                    f"queue {self.name} does not exist; run `cheerful init --backend URL` to "
                    "create it"
                )
            with self._errors("read the attributes of", self.name):
                a = self.client.get_queue_attributes(
                    QueueUrl=url, AttributeNames=["MaximumMessageSize", "RedrivePolicy"]
                )["Attributes"]
            queue_bytes = int(a.get("MaximumMessageSize", DEFAULT_MESSAGE_BYTES))
            policy = json.loads(a.get("RedrivePolicy") or "{}")
            receives = int(policy.get("maxReceiveCount", self._requested_receives or 10))
            limit = queue_bytes - ATTRIBUTE_RESERVE
            if self._requested_bytes is not None:
                limit = min(limit, self._requested_bytes)
            self._info = {
                "queue_bytes": queue_bytes,
                "max_message_bytes": limit,
                "max_receives": receives,
            }
        return self._info

    def _ensure(self, name: str, max_receives: int, max_message_bytes: int) -> list[str]:
        created = []
        size = str(max_message_bytes + ATTRIBUTE_RESERVE)
        common = {"MaximumMessageSize": size, "MessageRetentionPeriod": str(RETENTION_S)}
        dead = name + _DEAD
        if self._url(dead) is None:
            self._create_queue(dead, common)
            created.append(dead)
        with self._errors("read the attributes of", dead):
            arn = self.client.get_queue_attributes(
                QueueUrl=self._url(dead), AttributeNames=["QueueArn"]
            )["Attributes"]["QueueArn"]
        if self._url(name) is None:
            policy = {"deadLetterTargetArn": arn, "maxReceiveCount": str(max_receives)}
            self._create_queue(name, {**common, "RedrivePolicy": json.dumps(policy)})
            created.append(name)
        return created

    def _create_queue(self, name: str, attributes: dict[str, str]) -> None:
        with self._errors("create the queue", name):
            url = self.client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        self._urls[name] = url

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
        url = self._url(name)
        if url is None:
            return []
        with self._errors("receive messages from", name):
            try:
                response = self.client.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=min(n, BATCH_SIZE),
                    VisibilityTimeout=math.ceil(visibility_s),
                    WaitTimeSeconds=int(wait),
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                    MessageAttributeNames=[_ATTR + "*"],
                )
            except Exception as exc:
                if error_code(exc) not in NO_QUEUE_CODES:
                    raise
                self._urls.pop(name, None)  # deleted meanwhile (a job was deleted)
                self._listed = (0.0, [])
                return []
        got, now = [], time.monotonic()
        for raw in response.get("Messages", ()):
            attributes = _attributes(raw)
            message = Message(
                id=attributes.get(_ID) or raw["MessageId"],
                body=_decoded(raw["Body"], attributes),
                receipt=f"{name} {raw['ReceiptHandle']}",
                receive_count=int(raw.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
                group=attributes.get(_GROUP, ""),
            )
            got.append(message)
            with self._lock:
                self._held[message.receipt] = _Held(
                    message.id, message.body, message.group, message.receive_count, now
                )
                while len(self._held) > _HELD_MAX:
                    self._held.popitem(last=False)
        return got

    def _send_entries(self, url: str, entries: list[dict], group: str) -> list[str]:
        ids: dict[str, str] = {}
        pending = entries
        for attempt in range(1, 4):
            with self._errors("send messages", url.rsplit("/", 1)[-1]):
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
        id_of = {e["Id"]: e.get("MessageAttributes", {}).get(_ID) for e in entries}
        return [id_of[e["Id"]]["StringValue"] if id_of[e["Id"]] else ids[e["Id"]] for e in entries]

    def _per_queue(self, receipts: list[str], action: str, call: Any) -> list[bool]:
        results = [False] * len(receipts)
        by_queue: dict[str, list[tuple[int, str]]] = {}
        for i, receipt in enumerate(receipts):
            name, handle = _split(receipt)
            by_queue.setdefault(name, []).append((i, handle))
        for name, items in by_queue.items():
            url = self._url(name)
            if url is None:  # the queue is gone, and the message with it
                continue
            entries = [
                {"Id": str(j), "ReceiptHandle": handle} for j, (_, handle) in enumerate(items)
            ]
            with self._errors(action, name):
                response = call(url, entries)
            for ok in response.get("Successful", ()):
                results[items[int(ok["Id"])][0]] = True
            for failed in response.get("Failed", ()):
                if failed.get("Code") not in _STALE:
                    raise QueueError(
                        f"cannot {action} in {name}: {failed.get('Code')}: {failed.get('Message')}"
                    )
        return results

    def _attributes(self, name: str) -> dict[str, int]:
        url = self._url(name)
        if url is None:
            return {}
        with self._errors("read the attributes of", name):
            try:
                a = self.client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
            except Exception as exc:
                if error_code(exc) in NO_QUEUE_CODES:
                    self._urls.pop(name, None)
                    return {}
                raise
        return {k: int(v) for k, v in a["Attributes"].items() if k.startswith("ApproximateNumber")}

    def _read_dead(
        self, group: str | None, *, release: bool
    ) -> Iterator[tuple[DeadLetter, float, str, str]]:
        """Every dead letter (of ``group`` or all), with when it died, its dead-letter
        queue and receipt handle; each is hidden while read and, with ``release``, shown
        again."""
        names = [self._queue_name(group)] if group is not None else self._all_names()
        for name in names:
            dead = name + _DEAD
            url = self._url(dead)
            if url is None:
                continue
            # The queue's count says how many to read: short polls until that many are
            # seen, then a long poll or two if SQS's sampling hid some.
            expected = sum(self._attributes(dead).values())
            seen: list[str] = []
            try:
                empty = 0
                while len(seen) < expected and empty < 2:
                    with self._errors("read the dead letters of", dead):
                        response = self.client.receive_message(
                            QueueUrl=url,
                            MaxNumberOfMessages=BATCH_SIZE,
                            VisibilityTimeout=_DEAD_READ_S,
                            WaitTimeSeconds=1 if empty else 0,
                            MessageSystemAttributeNames=[
                                "ApproximateReceiveCount",
                                "SentTimestamp",
                            ],
                            MessageAttributeNames=[_ATTR + "*"],
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
        attributes = _attributes(raw)
        receives = attributes.get(_RECEIVES)
        count = int(receives) if receives else self.max_receives
        reason = attributes.get(_REASON) or (
            f"received {count} times without being deleted (worker died or gave up)"
        )
        letter = DeadLetter(
            id=attributes.get(_ID) or raw["MessageId"],
            body=_decoded(raw["Body"], attributes),
            reason=reason,
            receive_count=count,
            group=attributes.get(_GROUP, ""),
        )
        died = attributes.get(_DIED)
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
            url = self._url(name)
            if url is None:
                continue
            with self._errors("purge", name):
                try:
                    self.client.purge_queue(QueueUrl=url)
                    continue
                except Exception as exc:
                    if error_code(exc) not in {
                        "AWS.SimpleQueueService.PurgeQueueInProgress",
                        "PurgeQueueInProgress",
                    }:
                        raise
            while batch := self._receive_from(name, BATCH_SIZE, 60, 0):  # purged < 60 s ago
                self._delete_batch([m.receipt for m in batch])

    def _errors(self, action: str, resource: str) -> Any:
        return aws_errors(
            QueueError, action, f"SQS queue {resource} ({self.clients.region or 'default region'})"
        )


def _split(receipt: str) -> tuple[str, str]:
    name, sep, handle = receipt.partition(" ")
    if not sep or not handle:
        raise QueueError(f"{receipt[:40]!r} is not a receipt of an SQS queue")
    return name, handle


def _encoded(body: bytes, attributes: dict[str, str]) -> dict[str, Any]:
    attributes = dict(attributes)
    if _TEXT.fullmatch(body):
        text = body.decode("ascii")
    else:
        text = base64.b64encode(body).decode("ascii")
        attributes[_ENCODING] = "base64"
    entry: dict[str, Any] = {"MessageBody": text}
    if attributes:
        entry["MessageAttributes"] = {
            k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
        }
    return entry


def _decoded(text: str, attributes: dict[str, str]) -> bytes:
    if attributes.get(_ENCODING) == "base64":
        return base64.b64decode(text)
    return text.encode("utf-8")


def _attributes(raw: dict) -> dict[str, str]:
    return {
        name: value.get("StringValue", "")
        for name, value in raw.get("MessageAttributes", {}).items()
        if name.startswith(_ATTR)
    }
