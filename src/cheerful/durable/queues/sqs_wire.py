"""How cheerful's messages look on SQS: bodies as text, attributes, receipts.

SQS carries text, so a body that is plain ASCII travels as it is and any other body as
base64 (flagged by the ``cheerful.encoding`` attribute; its size counts 4/3). cheerful's
own message attributes (the group, the original id, a dead letter's reason, receives and
time of death) all start with ``cheerful.``. A receipt names the queue it came from:
``"<queue name> <receipt handle>"``.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from cheerful.errors import QueueError

__all__ = [
    "ATTR",
    "DIED",
    "GROUP",
    "ID",
    "REASON",
    "RECEIVES",
    "decoded",
    "encoded",
    "is_text",
    "message_attributes",
    "split_receipt",
]

ATTR = "cheerful."
"""The prefix of cheerful's message attributes."""
ENCODING, GROUP, ID, REASON, RECEIVES, DIED = (
    ATTR + name for name in ("encoding", "group", "id", "reason", "receives", "died")
)
_TEXT = re.compile(rb"[\t\n\x20-\x7e]*")


def is_text(body: bytes) -> bool:
    """True if ``body`` travels as it is (plain ASCII text), False if as base64."""
    return _TEXT.fullmatch(body) is not None


def encoded(body: bytes, attributes: dict[str, str]) -> dict[str, Any]:
    """The ``MessageBody`` and ``MessageAttributes`` of a send entry for ``body``."""
    attributes = dict(attributes)
    if is_text(body):
        text = body.decode("ascii")
    else:
        text = base64.b64encode(body).decode("ascii")
        attributes[ENCODING] = "base64"
    entry: dict[str, Any] = {"MessageBody": text}
    if attributes:
        entry["MessageAttributes"] = {
            k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
        }
    return entry


def decoded(text: str, attributes: dict[str, str]) -> bytes:
    """The body bytes of a received message's text."""
    if attributes.get(ENCODING) == "base64":
        return base64.b64decode(text)
    return text.encode("utf-8")


def message_attributes(raw: dict) -> dict[str, str]:
    """cheerful's attributes of a received message, as strings."""
    return {
        name: value.get("StringValue", "")
        for name, value in raw.get("MessageAttributes", {}).items()
        if name.startswith(ATTR)
    }


def split_receipt(receipt: str) -> tuple[str, str]:
    """The queue name and the SQS receipt handle of one of cheerful's receipts."""
    name, sep, handle = receipt.partition(" ")
    if not sep or not handle:
        raise QueueError(f"{receipt[:40]!r} is not a receipt of an SQS queue")
    return name, handle
