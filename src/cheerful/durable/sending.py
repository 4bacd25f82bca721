"""Send a job's chunks to the queue, and mark a job cancelled: the two writes that both
submitting and retrying make.

A chunk's inputs ride inline in its message when they fit, else they are stored at
``inputs/<chunk>`` and the message names them. If sending fails part way, the job is
marked cancelled, so workers drop what was sent.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from cheerful.errors import JobError
from cheerful.serialize import dumps

from . import layout
from .backends import Backend
from .messages import ChunkMessage

__all__ = ["SEND_BATCH", "json_bytes", "mark_cancelled", "send_chunks"]

SEND_BATCH = 100
"""Messages built and sent together (bounds the memory a big submit uses)."""
SENDS_AT_ONCE = 8
"""On a remote queue (SQS: 10 messages a request) this many batches are sent at once: a
submit of 100,000 chunks takes seconds, not minutes."""


def json_bytes(data: dict) -> bytes:
    """A manifest or marker as stored: indented JSON."""
    return json.dumps(data, indent=1).encode()


def mark_cancelled(backend: Backend, job_id: str) -> bool:
    """Store the job's cancelled marker (who and when); False if it was there already."""
    stamp = json_bytes({"at": time.time(), "host": platform.node(), "pid": os.getpid()})
    return backend.store.put_if_absent(layout.cancelled(job_id), stamp)


def send_chunks(
    backend: Backend,
    job_id: str,
    chunks: Iterable[tuple[int, Sequence[int]]],
    items_of: Callable[[Sequence[int]], Sequence[Any]],
    doing: str,
    *,
    again: str | None = None,
) -> int:
    """Send each ``(chunk, indices)``'s message with its inputs (``items_of(indices)``)
    inline when they fit, else stored at ``inputs/<chunk>`` and named, in the queue group named
    after the job (a worker serving one job receives from that group only); return how
    many were sent. On a failure :class:`~cheerful.errors.JobError` says how many went out
    and, with ``again``, what to run to finish; without it (a submit), the job is cancelled
    first (workers drop what was sent) and must be submitted again."""
    sender = _Sender(backend.queue, job_id)
    bodies: list[bytes] = []
    try:
        with sender:
            for chunk, indices in chunks:
                bodies.append(_message(backend, job_id, chunk, indices, items_of(indices)))
                if len(bodies) >= SEND_BATCH:
                    sender.send(bodies)
                    bodies = []
            if bodies:
                sender.send(bodies)
    except BaseException as exc:
        sent = sender.sent
        if again is None:
            mark_cancelled(backend, job_id)
        if not isinstance(exc, Exception):
            raise
        advice = again or "the job is cancelled, submit it again"
        raise JobError(
            f"{doing} job {job_id} failed after {sent} chunk message(s) were sent: {exc}; {advice}"
        ) from exc
    return sender.sent


class _Sender:
    """Sends batches of messages: in order on a local queue, :data:`SENDS_AT_ONCE` at a time
    on a remote one. ``sent`` counts the messages of the sends that completed; leaving the
    ``with`` block waits for every send under way (the first failure is raised then)."""

    def __init__(self, queue: Any, group: str) -> None:
        self.queue, self.group, self.sent = queue, group, 0
        self.threads = ThreadPoolExecutor(SENDS_AT_ONCE) if queue.remote else None
        self.pending: deque[Future] = deque()

    def send(self, bodies: list[bytes]) -> None:
        if self.threads is None:
            self.sent += len(self.queue.send(bodies, group=self.group))
            return
        self.pending.append(self.threads.submit(self.queue.send, bodies, group=self.group))
        while len(self.pending) >= SENDS_AT_ONCE:
            self._collect()

    def _collect(self) -> None:
        self.sent += len(self.pending.popleft().result())

    def __enter__(self) -> _Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        failure: BaseException | None = None
        while self.pending:  # every send under way ends before the count is known
            try:
                self._collect()
            except BaseException as error:  # noqa: BLE001 - the first is raised below
                failure = failure or error
        if self.threads is not None:
            self.threads.shutdown()
        if failure is not None and exc[0] is None:
            raise failure

def _message(
    backend: Backend, job_id: str, chunk: int, indices: Sequence[int], items: Sequence[Any]
) -> bytes:
    payload = dumps(list(items))
    limit = backend.queue.max_message_bytes
    # base64 makes 4 bytes of 3: a payload that cannot fit is spilled before it is encoded
    # (a 500 MB input would otherwise be held three times more, as base64 and as JSON).
    if 4 * -(-len(payload) // 3) < limit:
        body = ChunkMessage(job_id, chunk, indices, inputs=payload).encode()
        if len(body) <= limit:
            return body
    key = layout.input(job_id, chunk)
    backend.store.put(key, payload)
    return ChunkMessage(job_id, chunk, indices, spill=key).encode()
