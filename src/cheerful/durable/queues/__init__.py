"""Queues of opaque byte messages with SQS semantics; see :mod:`cheerful.durable.queues.base`."""

from .base import DeadLetter, Message, Queue, QueueCounts

__all__ = ["DeadLetter", "Message", "Queue", "QueueCounts"]
