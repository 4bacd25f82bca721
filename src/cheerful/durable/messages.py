"""What travels through a durable job's queue and what a worker stores for each chunk.

A queue message is a small JSON envelope naming the job, the chunk and its tasks; the
chunk's inputs ride inside it (cloudpickled, base64) unless they are too big for the
queue, in which case they are spilled to the store (``jobs/<job>/inputs/<chunk>``) and
the message names the key. Anything that does not decode is a :class:`MalformedMessage`
and goes to the dead-letter queue with the reason.

A chunk's outcome is stored once at ``jobs/<job>/results/<chunk>`` as a pickled
:class:`ChunkRecord` (first write wins, so a duplicate delivery cannot overwrite it).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cheerful.errors import CheerfulError
from cheerful.task import ChunkResult

__all__ = ["SCHEMA", "ChunkMessage", "ChunkRecord", "MalformedMessage"]

SCHEMA = 1
MAX_NUMBER = 10**8
"""Task and chunk numbers are below this (the store layout's 8 digits)."""


class MalformedMessage(CheerfulError):
    """A queue message that is not a cheerful chunk message (bad bytes or schema)."""


@dataclass(frozen=True)
class ChunkMessage:
    """One chunk of a job to run: task ``indices``, with ``inputs`` inline or ``spill``.

    ``inputs`` is the cloudpickled list of the chunk's items (one per index). ``spill``
    is the store key holding those bytes when they were too big for a message. Consecutive
    indices decode as a ``range`` (a message cannot make a worker build a huge tuple); a
    worker checks them against the job's chunk plan before anything runs.
    """

    job: str
    chunk: int
    indices: Sequence[int]
    inputs: bytes | None = None
    spill: str | None = None

    def encode(self) -> bytes:
        """The message body: compact JSON, consecutive indices written as a range."""
        body: dict[str, Any] = {"v": SCHEMA, "job": self.job, "chunk": self.chunk}
        body.update(_encode_indices(self.indices))
        if self.spill is not None:
            body["spill"] = self.spill
        else:
            body["inputs"] = base64.b64encode(self.inputs or b"").decode("ascii")
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, body: bytes) -> ChunkMessage:
        """Parse a body made by :meth:`encode`; raise :class:`MalformedMessage` if it isn't."""
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedMessage(f"not JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("v") != SCHEMA:
            raise MalformedMessage(f"not a cheerful chunk message of schema {SCHEMA}")
        chunk = _field(data, "chunk", int)
        if not 0 <= chunk < MAX_NUMBER:
            raise MalformedMessage(f"field 'chunk' out of range: {chunk}")
        return cls(
            job=_field(data, "job", str),
            chunk=chunk,
            indices=_decode_indices(data),
            inputs=_decode_inputs(data),
            spill=data.get("spill") if isinstance(data.get("spill"), str) else None,
        )


def _field(data: dict, name: str, kind: type) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MalformedMessage(f"field {name!r} missing or not {kind.__name__}")
    return value


def _encode_indices(indices: Sequence[int]) -> dict[str, Any]:
    start, count = indices[0], len(indices)
    if isinstance(indices, range) and indices.step == 1:
        return {"start": start, "count": count}
    if list(indices) == list(range(start, start + count)):
        return {"start": start, "count": count}
    return {"indices": list(indices)}


def _decode_indices(data: dict) -> Sequence[int]:
    if "indices" in data:
        raw = data["indices"]
        if not isinstance(raw, list) or not raw or not all(_is_index(i) for i in raw):
            raise MalformedMessage("field 'indices' is not a non-empty list of task numbers")
        return tuple(raw)
    start, count = _field(data, "start", int), _field(data, "count", int)
    if not 0 <= start < MAX_NUMBER or not 0 < count <= MAX_NUMBER - start:
        raise MalformedMessage("fields 'start'/'count' out of range")
    return range(start, start + count)


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_NUMBER


def _decode_inputs(data: dict) -> bytes | None:
    if "spill" in data:
        if not isinstance(data["spill"], str):
            raise MalformedMessage("field 'spill' is not a store key")
        return None
    raw = _field(data, "inputs", str)
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedMessage(f"field 'inputs' is not base64: {exc}") from exc


@dataclass(frozen=True)
class ChunkRecord:
    """What a worker stores when a chunk is finished (pickled, write-once).

    ``result`` holds the values and final errors; ``attempts`` how many tries each task
    took (1 = first try); ``logs`` the store key of each task's last log, for tasks that
    printed anything or failed.
    """

    job: str
    chunk: int
    result: ChunkResult
    attempts: dict[int, int] = field(default_factory=dict)
    logs: dict[int, str] = field(default_factory=dict)
    worker: str = ""
    finished: float = 0.0
    seconds: dict[int, float] = field(default_factory=dict)
    """How long each task's last attempt ran."""
