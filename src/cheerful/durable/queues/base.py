"""The queue protocol: opaque bytes in and out, with the semantics of Amazon SQS.

Every queue keeps the same contract (DESIGN.md, "the queue contract"):

- ``send(bodies)`` stores messages; a body over ``max_message_bytes`` is refused with a
  :class:`~cheerful.errors.QueueError` (spill the payload to the store, send its key).
- ``receive(max_messages, wait_s, visibility_s)`` hands out visible messages; each stays
  invisible for ``visibility_s`` seconds and reappears unless deleted. Every receive adds one
  to the message's ``receive_count`` and issues a new receipt. With ``wait_s`` the call
  long-polls: it returns as soon as a message arrives, or empty after ``wait_s``.
- The receive that would hand a message out for the ``max_receives + 1``-th time moves it to
  the dead letters instead, with the reason "received N times without being deleted".
- A receipt belongs to one receive. Once the message is received again, the older receipt is
  *stale*: ``extend`` with it raises ``QueueError`` (the holder lost its claim and must learn
  it), while ``delete``, ``release`` and ``dead_letter`` with it are no-ops that report
  ``False`` (as SQS, which accepts the call but keeps the message). ``delete`` of an
  already deleted message is a no-op too, so deletes are idempotent.
- Delivery is at least once: whatever runs a message must be idempotent.
- Message groups: ``send(bodies, group="X")`` tags the messages with a group (default
  ``""``); ``receive(..., group="X")`` hands out only messages of that group, while
  ``group=None`` (the default) receives from every group. Receiving in one group never
  touches another group's messages (their ``receive_count`` does not move), so a consumer
  that serves one group cannot push the others' messages to the dead letters. A group is a
  str of at most :data:`MAX_GROUP_CHARS` characters. Dead letters keep their group and
  ``redrive_dead`` puts them back in it. ``counts(group=None)`` counts every group, or one.
  The SQS implementation (not written yet) maps a group to a message attribute plus a
  queue per group (or a filter on that attribute); the embedded queue keeps a column.

:class:`Queue` owns the validation and the batching (groups of :data:`BATCH_SIZE`, as SQS);
an implementation overrides the small ``_hooks`` at the bottom. The injected ``clock``
(seconds, like :func:`time.time`) drives visibility; long polls wait in real time.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from cheerful.errors import ConfigError, QueueError

__all__ = [
    "BATCH_SIZE",
    "MAX_GROUP_CHARS",
    "MAX_MESSAGE_BYTES",
    "MAX_VISIBILITY_S",
    "MAX_WAIT_S",
    "DeadLetter",
    "Message",
    "Queue",
    "QueueCounts",
]

BATCH_SIZE = 10
"""Messages per call to an implementation hook (the SQS batch limit)."""
MAX_MESSAGE_BYTES = 256 * 1024
"""The default and SQS limit on one message body."""
MAX_WAIT_S = 20.0
"""The longest long poll (the SQS limit)."""
MAX_VISIBILITY_S = 43200.0
"""The longest visibility timeout: 12 hours (the SQS limit)."""

MAX_GROUP_CHARS = 128
"""The longest message group name."""

_POLL_FIRST_S = 0.01
_POLL_MAX_S = 0.05

T = TypeVar("T")


@dataclass(frozen=True)
class Message:
    """A received message: its ``id``, its ``body``, the ``receipt`` of this receive, how
    many times it has been received, this time included, and its ``group``."""

    id: str
    body: bytes
    receipt: str
    receive_count: int
    group: str = ""


@dataclass(frozen=True)
class QueueCounts:
    """How many messages are ``visible`` (waiting), ``in_flight`` (held) and ``dead``."""

    visible: int
    in_flight: int
    dead: int


@dataclass(frozen=True)
class DeadLetter:
    """A message in the dead letters: why it is there, how often it had been received, and
    the group it was sent in."""

    id: str
    body: bytes
    reason: str
    receive_count: int
    group: str = ""


class Queue(abc.ABC):
    """A queue of opaque byte messages with SQS semantics (see the module docstring)."""

    remote: bool = False
    """True where every call is a paid network request (SQS): callers batch harder."""

    def __init__(
        self,
        *,
        max_receives: int = 10,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_receives = _positive_int("max_receives", max_receives)
        self.max_message_bytes = _positive_int("max_message_bytes", max_message_bytes)
        self.clock = clock

    def send(self, bodies: Sequence[bytes], group: str = "") -> list[str]:
        """Send ``bodies`` in ``group`` (all checked first, then sent in batches); return
        their ids."""
        group = _group(group)
        checked = [self._checked_body(body) for body in _sequence("bodies", bodies)]
        return [id_ for batch in _batches(checked) for id_ in self._send_batch(batch, group)]

    def receive(
        self,
        max_messages: int = 10,
        wait_s: float = 0.0,
        visibility_s: float = 30.0,
        group: str | None = None,
    ) -> list[Message]:
        """Claim up to ``max_messages`` visible messages for ``visibility_s`` seconds,
        waiting up to ``wait_s`` seconds for the first one to arrive; only messages of
        ``group`` when given, else of every group."""
        _positive_int("max_messages", max_messages)
        _seconds("wait_s", wait_s, MAX_WAIT_S)
        _seconds("visibility_s", visibility_s, MAX_VISIBILITY_S)
        group = None if group is None else _group(group)
        got = self._wait_and_claim(min(max_messages, BATCH_SIZE), wait_s, visibility_s, group)
        while got and len(got) < max_messages:
            more = self._claim(min(max_messages - len(got), BATCH_SIZE), visibility_s, group)
            if not more:
                break
            got += more
        return got

    def extend(self, receipts: str | Sequence[str], visibility_s: float) -> None:
        """Keep held messages invisible for ``visibility_s`` seconds from now (a heartbeat).

        Every fresh receipt is extended; then :class:`QueueError` is raised if any was stale.
        """
        _seconds("visibility_s", visibility_s, MAX_VISIBILITY_S)
        receipts = _receipts(receipts)
        done = self._per_batch(receipts, lambda batch: self._extend_batch(batch, visibility_s))
        stale = [receipt for receipt, ok in zip(receipts, done, strict=True) if not ok]
        if stale:
            raise QueueError(
                f"{len(stale)} stale receipt(s), the message was received again or deleted: "
                f"{stale[:3]}; stop working on it"
            )

    def release(self, receipts: str | Sequence[str]) -> list[bool]:
        """Make held messages visible at once; per receipt, False if it was stale."""
        return self._per_batch(_receipts(receipts), lambda batch: self._extend_batch(batch, 0.0))

    def delete(self, receipts: str | Sequence[str]) -> list[bool]:
        """Delete held messages; per receipt, True if this call deleted the message.

        A stale receipt or an already deleted message gives False and changes nothing.
        """
        return self._per_batch(_receipts(receipts), self._delete_batch)

    def dead_letter(self, receipt: str, reason: str) -> bool:
        """Move a held message to the dead letters now, with ``reason``; False if stale."""
        (receipt,) = _receipts(receipt)
        return self._dead_letter(receipt, str(reason))

    def counts(self, group: str | None = None) -> QueueCounts:
        """Count the visible, in-flight and dead messages, of every group or of ``group``
        (a message that has used up its receives counts as visible until the next receive
        moves it to the dead letters)."""
        return self._counts(None if group is None else _group(group))

    def dead_letters(self, limit: int = 100, group: str | None = None) -> list[DeadLetter]:
        """Return up to ``limit`` dead letters (of ``group``, or of every group), oldest
        first."""
        group = None if group is None else _group(group)
        return self._dead_letters(_positive_int("limit", limit), group)

    def redrive_dead(self, ids: Sequence[str] | None = None, group: str | None = None) -> int:
        """Move dead letters (all, or those with ``ids``; of ``group`` or of every group)
        back to the queue, each in its group, with a fresh ``receive_count``; return how
        many moved."""
        group = None if group is None else _group(group)
        return self._redrive(None if ids is None else _receipts(ids), group)

    def delete_group(self, group: str) -> None:
        """Delete every message of ``group``, visible, in flight or dead (a deleted job's
        leftovers); other groups are untouched."""
        self._delete_group(_group(group))

    def purge(self, dead: bool = False) -> None:
        """Delete every message, visible or in flight; also the dead letters if ``dead``."""
        self._purge(dead)

    def close(self) -> None:
        """Release the queue's connections; the object may reconnect if used again."""
        self._close()

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _checked_body(self, body: bytes) -> bytes:
        if not isinstance(body, bytes):
            raise ConfigError(f"a message body must be bytes, not {type(body).__name__}")
        if len(body) > self.max_message_bytes:
            raise QueueError(
                f"message of {len(body)} bytes exceeds the queue limit of "
                f"{self.max_message_bytes} bytes; spill the payload to the store and send its key"
            )
        return body

    def _per_batch(self, items: list[str], call: Callable[[list[str]], list[T]]) -> list[T]:
        return [result for batch in _batches(items) for result in call(batch)]

    def _wait_and_claim(
        self, n: int, wait_s: float, visibility_s: float, group: str | None
    ) -> list[Message]:
        """Claim up to ``n`` messages (of ``group``, or any), polling until ``wait_s``
        passes; an implementation with a native long poll (SQS) overrides this."""
        deadline = time.monotonic() + wait_s
        pause = _POLL_FIRST_S
        while True:
            got = self._claim(n, visibility_s, group)
            left = deadline - time.monotonic()
            if got or left <= 0:
                return got
            time.sleep(min(pause, left))
            pause = min(pause * 1.5, _POLL_MAX_S)

    # The hooks: each handles at most BATCH_SIZE items, arguments already validated.

    @abc.abstractmethod
    def _send_batch(self, bodies: list[bytes], group: str) -> list[str]:
        """Store ``bodies`` as visible messages of ``group``; return their new ids."""

    @abc.abstractmethod
    def _claim(self, n: int, visibility_s: float, group: str | None) -> list[Message]:
        """Claim up to ``n`` visible messages of ``group`` (None: any) at once, without
        waiting, dead-lettering those received ``max_receives`` times already."""

    @abc.abstractmethod
    def _extend_batch(self, receipts: list[str], visibility_s: float) -> list[bool]:
        """Set the visibility of held messages to now + ``visibility_s``; False if stale."""

    @abc.abstractmethod
    def _delete_batch(self, receipts: list[str]) -> list[bool]:
        """Delete held messages; False where the receipt is stale or the message gone."""

    @abc.abstractmethod
    def _dead_letter(self, receipt: str, reason: str) -> bool:
        """Move a held message to the dead letters; False if the receipt is stale."""

    @abc.abstractmethod
    def _counts(self, group: str | None) -> QueueCounts:
        """Count visible, in-flight and dead messages (of ``group``, or all)."""

    @abc.abstractmethod
    def _dead_letters(self, limit: int, group: str | None) -> list[DeadLetter]:
        """Return up to ``limit`` dead letters (of ``group``, or all), oldest first."""

    @abc.abstractmethod
    def _redrive(self, ids: list[str] | None, group: str | None) -> int:
        """Move dead letters (of ``group``, or all) back as fresh messages of their
        groups; return how many."""

    @abc.abstractmethod
    def _delete_group(self, group: str) -> None:
        """Delete the messages and dead letters of ``group``."""

    @abc.abstractmethod
    def _purge(self, dead: bool) -> None:
        """Delete every message (and the dead letters if ``dead``)."""

    @abc.abstractmethod
    def _close(self) -> None:
        """Release connections."""


def _batches(items: list[T], size: int = BATCH_SIZE) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _sequence(name: str, values: Sequence[T]) -> list[T]:
    if isinstance(values, (bytes, str)):
        raise ConfigError(f"{name} must be a sequence of items, not a single {type(values)}")
    return list(values)


def _receipts(receipts: str | Sequence[str]) -> list[str]:
    receipts = [receipts] if isinstance(receipts, str) else list(receipts)
    for receipt in receipts:
        if not isinstance(receipt, str) or not receipt:
            raise ConfigError(f"a receipt (or id) is a non-empty str, not {receipt!r}")
    return receipts


def _group(group: str) -> str:
    if not isinstance(group, str) or len(group) > MAX_GROUP_CHARS:
        raise ConfigError(
            f"a message group is a str of at most {MAX_GROUP_CHARS} characters, not {group!r}"
        )
    return group


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive int, not {value!r}")
    return value


def _seconds(name: str, value: float, most: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= most:
        raise ConfigError(f"{name} must be a number of seconds from 0 to {most:g}, not {value!r}")
    return float(value)
