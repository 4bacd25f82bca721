"""Queues of opaque byte messages with SQS semantics; see :mod:`cheerful.queues.base`."""

from cheerful.queues.base import DeadLetter, Message, Queue, QueueCounts

__all__ = ["DeadLetter", "Message", "Queue", "QueueCounts"]
