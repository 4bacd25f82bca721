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
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from cheerful.errors import JobError
from cheerful.serialize import dumps

from . import layout
from .backends import Backend
from .messages import ChunkMessage

__all__ = ["SEND_BATCH", "json_bytes", "mark_cancelled", "send_chunks"]

SEND_BATCH = 100
"""Messages built and sent together (bounds the memory a big submit uses)."""


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
    queue, sent, bodies = backend.queue, 0, []
    try:
        for chunk, indices in chunks:
            bodies.append(_message(backend, job_id, chunk, indices, items_of(indices)))
            if len(bodies) >= SEND_BATCH:
                sent += len(queue.send(bodies, group=job_id))
                bodies = []
        if bodies:
            sent += len(queue.send(bodies, group=job_id))
    except BaseException as exc:
        if again is None:
            mark_cancelled(backend, job_id)
        if not isinstance(exc, Exception):
            raise
        advice = again or "the job is cancelled, submit it again"
        raise JobError(
            f"{doing} job {job_id} failed after {sent} chunk message(s) were sent: {exc}; {advice}"
        ) from exc
    return sent


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
