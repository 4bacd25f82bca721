"""The SQS queues of a backend: their names, URLs, creation and attributes.

One standard SQS queue per message group, each with its own dead-letter queue, all named
from the backend's queue name ``Q`` (the group "" is ``Q`` itself)::

    Q                       the base queue (group "")      Q--dead   its dead letters
    Q--<group>-<hash8>      the queue of one group (job)   ...--dead its dead letters

:class:`SqsDirectory` resolves these names to URLs (cached), lists the groups' queues
(cached for a few seconds), creates a group's queues on its first send with the base
queue's settings, and reads the base queue's limits. Every call runs inside
:func:`cheerful.durable.aws.aws_errors`.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any

from cheerful.errors import ConfigError, QueueError

from ..aws import NO_QUEUE_CODES, AwsClients, aws_errors, error_code

__all__ = [
    "ATTRIBUTE_RESERVE",
    "DEAD",
    "DEFAULT_MESSAGE_BYTES",
    "RETENTION_S",
    "SqsDirectory",
    "valid_queue_name",
]

ATTRIBUTE_RESERVE = 1024
"""Bytes of a queue's ``MaximumMessageSize`` kept for cheerful's message attributes."""
RETENTION_S = 14 * 24 * 3600
"""How long SQS keeps a message (its maximum): a job may wait in the queue two weeks."""
DEFAULT_MESSAGE_BYTES = 256 * 1024
"""``MaximumMessageSize`` of the queues ``cheerful init`` creates."""
DEAD = "--dead"
"""What a queue's name gains to name its dead-letter queue."""

_GROUP_SEP = "--"
_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")
_LIST_TTL_S = 5.0


def valid_queue_name(name: str) -> str:
    """Return ``name`` if it can name a backend's base queue, else raise ConfigError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or _GROUP_SEP in name:
        raise ConfigError(
            f"queue name {name!r} is not valid: use 1 to 40 letters, digits, '-' or '_', "
            "without '--' (cheerful appends '--<job>' and '--dead' to it)"
        )
    return name


class SqsDirectory:
    """The queues named from ``name`` on SQS: names, URLs, creation, attributes.

    ``requested_receives`` and ``requested_bytes`` are what :meth:`create` gives new base
    queues; an existing queue's own redrive policy and size limit win.
    """

    def __init__(
        self,
        name: str,
        clients: AwsClients,
        client: Any = None,
        requested_receives: int = 10,
        requested_bytes: int | None = DEFAULT_MESSAGE_BYTES,
    ) -> None:
        self.name = valid_queue_name(name)
        self.clients = clients
        self._client = client
        self.requested_receives = requested_receives
        self.requested_bytes = requested_bytes
        self._info: dict[str, Any] | None = None
        self._urls: dict[str, str] = {}
        self._listed: tuple[float, list[str]] = (0.0, [])
        self._rotation = 0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_client": None, "_listed": (0.0, [])}

    @property
    def client(self) -> Any:
        """The boto3 SQS client in use."""
        return self._client if self._client is not None else self.clients.client("sqs")

    def errors(self, action: str, resource: str) -> Any:
        """The context that turns an SQS error while doing ``action`` into a QueueError."""
        return aws_errors(
            QueueError, action, f"SQS queue {resource} ({self.clients.region or 'default region'})"
        )

    # Names.

    def queue_name(self, group: str) -> str:
        """The name of the queue that holds ``group``'s messages."""
        if not group:
            return self.name
        digest = hashlib.sha256(group.encode()).hexdigest()[:8]
        room = 80 - len(DEAD) - len(self.name) - len(_GROUP_SEP) - 1 - len(digest)
        readable = re.sub(r"[^A-Za-z0-9_-]", "_", group)[:room].replace(_GROUP_SEP, "-_")
        return f"{self.name}{_GROUP_SEP}{readable}-{digest}"

    def group_names(self) -> list[str]:
        """The queues of every group but "" (cached for a few seconds)."""
        stamp, names = self._listed
        if time.monotonic() - stamp < _LIST_TTL_S:
            return names
        prefix = self.name + _GROUP_SEP
        names = []
        with self.errors("list the queues", prefix + "*"):
            pages = self.client.get_paginator("list_queues").paginate(
                QueueNamePrefix=prefix, PaginationConfig={"PageSize": 1000}
            )
            for page in pages:
                for url in page.get("QueueUrls", ()):
                    name = url.rsplit("/", 1)[-1]
                    if not name.endswith(DEAD):
                        names.append(name)
                        self._urls[name] = url
        self._listed = (time.monotonic(), sorted(names))
        return self._listed[1]

    def all_names(self) -> list[str]:
        """The base queue and every group's queue."""
        return [self.name, *self.group_names()]

    def names_of(self, group: str | None) -> list[str]:
        """The queues of ``group``, or of every group (None), whether they exist or not."""
        return [self.queue_name(group)] if group is not None else self.all_names()

    def receiving_from(self, group: str | None) -> list[str]:
        """The existing queues to receive from, for ``group`` or (None) every group, the
        latter starting where the last sweep stopped so that no group starves."""
        if group is not None:
            name = self.queue_name(group)
            return [name] if self.url(name) is not None else []
        names = [n for n in self.all_names() if self.url(n) is not None]
        if len(names) > 1:
            self._rotation = (self._rotation + 1) % len(names)
            names = names[self._rotation :] + names[: self._rotation]
        return names

    # URLs.

    def url(self, name: str) -> str | None:
        """The URL of queue ``name``, or None if it does not exist (cached)."""
        url = self._urls.get(name)
        if url is not None:
            return url
        with self.errors("look up the queue", name):
            try:
                url = self.client.get_queue_url(QueueName=name)["QueueUrl"]
            except Exception as exc:
                if error_code(exc) in NO_QUEUE_CODES:
                    return None
                raise
        self._urls[name] = url
        return url

    def dead_url(self, name: str) -> str:
        """The URL of the dead-letter queue of queue ``name`` (QueueError if missing)."""
        url = self.url(name + DEAD)
        if url is None:
            raise QueueError(
                f"the dead-letter queue {name + DEAD} is missing; run `cheerful init --backend "
                "URL` again to create it"
            )
        return url

    def group_url(self, group: str, *, create: bool) -> str | None:
        """The URL of ``group``'s queue; with ``create``, made (as the base queue) if missing."""
        name = self.queue_name(group)
        url = self.url(name)
        if url is None and create:
            if group:
                info = self.base_info()
                self.ensure(name, info["max_receives"], info["queue_bytes"] - ATTRIBUTE_RESERVE)
                self._listed = (0.0, [])
            url = self.url(name)
            if url is None:
                raise QueueError(
                    f"queue {self.name} does not exist; run `cheerful init --backend URL` "
                    "to create it"
                )
        return url

    def forget(self, name: str) -> None:
        """Drop what is cached of queue ``name`` (it was deleted)."""
        self._urls.pop(name, None)
        self._listed = (0.0, [])

    def forget_all(self) -> None:
        """Drop every cached URL."""
        self._urls.clear()

    # Creating and reading queues.

    def base_info(self) -> dict[str, Any]:
        """The base queue's ``queue_bytes``, ``max_message_bytes`` and ``max_receives``."""
        if self._info is None:
            url = self.url(self.name)
            if url is None:
                raise QueueError(
                    f"queue {self.name} does not exist; run `cheerful init --backend URL` to "
                    "create it"
                )
            with self.errors("read the attributes of", self.name):
                a = self.client.get_queue_attributes(
                    QueueUrl=url, AttributeNames=["MaximumMessageSize", "RedrivePolicy"]
                )["Attributes"]
            queue_bytes = int(a.get("MaximumMessageSize", DEFAULT_MESSAGE_BYTES))
            policy = json.loads(a.get("RedrivePolicy") or "{}")
            receives = int(policy.get("maxReceiveCount", self.requested_receives or 10))
            limit = queue_bytes - ATTRIBUTE_RESERVE
            if self.requested_bytes is not None:
                limit = min(limit, self.requested_bytes)
            self._info = {
                "queue_bytes": queue_bytes,
                "max_message_bytes": limit,
                "max_receives": receives,
            }
        return self._info

    def limits_read(self) -> bool:
        """True once :meth:`base_info` has read the base queue's limits."""
        return self._info is not None

    def create_base(self) -> list[str]:
        """Create the base queue and its dead-letter queue if missing; the names created."""
        created = self.ensure(self.name, self.requested_receives, self.requested_bytes)
        self._info = None
        return created

    def ensure(self, name: str, max_receives: int, max_message_bytes: int) -> list[str]:
        """Create queue ``name`` and its dead-letter queue if missing; the names created."""
        created = []
        size = str(max_message_bytes + ATTRIBUTE_RESERVE)
        common = {"MaximumMessageSize": size, "MessageRetentionPeriod": str(RETENTION_S)}
        dead = name + DEAD
        if self.url(dead) is None:
            self._create_queue(dead, common)
            created.append(dead)
        with self.errors("read the attributes of", dead):
            arn = self.client.get_queue_attributes(
                QueueUrl=self.url(dead), AttributeNames=["QueueArn"]
            )["Attributes"]["QueueArn"]
        if self.url(name) is None:
            policy = {"deadLetterTargetArn": arn, "maxReceiveCount": str(max_receives)}
            self._create_queue(name, {**common, "RedrivePolicy": json.dumps(policy)})
            created.append(name)
        return created

    def _create_queue(self, name: str, attributes: dict[str, str]) -> None:
        with self.errors("create the queue", name):
            url = self.client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        self._urls[name] = url

    def delete(self, name: str) -> None:
        """Delete queue ``name`` if it exists."""
        url = self.url(name)
        if url is None:
            return
        with self.errors("delete the queue", name):
            try:
                self.client.delete_queue(QueueUrl=url)
            except Exception as exc:
                if error_code(exc) not in NO_QUEUE_CODES:
                    raise
        self.forget(name)

    def attributes(self, name: str) -> dict[str, int]:
        """The ``ApproximateNumber...`` counts of queue ``name`` ({} if it is gone)."""
        url = self.url(name)
        if url is None:
            return {}
        with self.errors("read the attributes of", name):
            try:
                a = self.client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
            except Exception as exc:
                if error_code(exc) in NO_QUEUE_CODES:
                    self._urls.pop(name, None)
                    return {}
                raise
        return {k: int(v) for k, v in a["Attributes"].items() if k.startswith("ApproximateNumber")}
