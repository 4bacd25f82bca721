"""Which chunks a job has, and which tasks each must carry: its submit's and its retries'.

A job's submit cuts its tasks into ``chunks`` consecutive spans of ``chunk_size``: chunk
``c`` holds tasks ``c * chunk_size`` up to the next span. Each ``retry`` is a *round*,
stored write-once at ``retries/<round>/round.json`` before any of its messages is sent: its
chunks are numbered on from the last chunk of the round before, each with an explicit list
of tasks and the attempts each task already had. :class:`ChunkPlan` answers, for any chunk
number, the tasks it must carry: a message or a record that says otherwise is not the job's
(a worker dead-letters it, a reader skips it). Nothing else decides that a chunk exists.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from cheerful.errors import ConfigError, JobError, ObjectNotFound

from . import layout
from .stores.base import Store

__all__ = ["SENDER_SILENCE_S", "ChunkPlan", "Round", "read_plan", "read_rounds", "sender_gone"]

SENDER_SILENCE_S = 600.0
"""A submit or retry sent from another machine that has not finished sending after this
long is taken for one that was cut short."""


@dataclass(frozen=True)
class Round:
    """One retry: chunks ``first_chunk`` on, the tasks of each, and the attempts each task
    had before (its next attempt is numbered one more). ``code`` is the store key of the
    code it runs (None: the job's own); ``sent``: every message of it went out."""

    number: int
    first_chunk: int
    chunks: tuple[tuple[int, ...], ...]
    attempts: tuple[tuple[int, ...], ...]
    code: str | None = None
    at: float = 0.0
    sent: bool = False
    by: dict | None = None  # the host and pid of the process that sent it

    @property
    def end(self) -> int:
        """The first chunk number after this round's."""
        return self.first_chunk + len(self.chunks)

    @property
    def tasks(self) -> int:
        """How many tasks the round sent again."""
        return sum(len(chunk) for chunk in self.chunks)

    def to_json(self, **extra: Any) -> bytes:
        """The stored form (``round.json``), without ``sent`` (a key of its own)."""
        data = {
            **extra,
            "round": self.number,
            "first_chunk": self.first_chunk,
            "chunks": [list(c) for c in self.chunks],
            "attempts": [list(a) for a in self.attempts],
            "code": self.code,
            "at": self.at,
        }
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes, sent: bool = False) -> Round:
        """Read a stored round; ValueError if it is not one."""
        raw = json.loads(data)
        chunks = tuple(tuple(_whole(i) for i in c) for c in raw["chunks"])
        attempts = tuple(tuple(_whole(a) for a in c) for c in raw["attempts"])
        if [len(c) for c in chunks] != [len(a) for a in attempts] or not all(chunks):
            raise ValueError("a round's chunks and attempts do not match")
        code = raw.get("code")
        if code is not None and not isinstance(code, str):
            raise ValueError("a round's code is not a key")
        return cls(
            _whole(raw["round"]),
            _whole(raw["first_chunk"]),
            chunks,
            attempts,
            code,
            float(raw.get("at") or 0.0),
            sent,
            raw.get("by") if isinstance(raw.get("by"), dict) else None,
        )


def _whole(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} is not a whole number")
    return value


@dataclass(frozen=True)
class ChunkPlan:
    """The chunks of a job (see the module docstring)."""

    job: str
    tasks: int
    chunk_size: int
    chunks: int
    rounds: tuple[Round, ...] = ()
    _retry: dict[int, tuple[Round, int]] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for r in self.rounds:
            for offset in range(len(r.chunks)):
                self._retry[r.first_chunk + offset] = (r, offset)

    @property
    def end(self) -> int:
        """The first chunk number no chunk of the job has (the next round starts there)."""
        return max([self.chunks, *(r.end for r in self.rounds)])

    def numbers(self) -> Iterator[int]:
        """Every chunk number of the job: the submit's, then each round's."""
        yield from range(self.chunks)
        yield from self._retry

    def expected(self, chunk: int) -> Sequence[int] | None:
        """The tasks chunk ``chunk`` must carry, or None if the job has no such chunk."""
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 0:
            return None
        if chunk < self.chunks:
            start = chunk * self.chunk_size
            return range(start, min(start + self.chunk_size, self.tasks))
        found = self._retry.get(chunk)
        return None if found is None else found[0].chunks[found[1]]

    def matches(self, chunk: int, indices: Sequence[int]) -> bool:
        """True if ``indices`` are exactly the tasks of chunk ``chunk``."""
        expected = self.expected(chunk)
        if expected is None or len(expected) != len(indices):
            return False
        if isinstance(expected, range) and isinstance(indices, range):
            return expected == indices
        return all(a == b for a, b in zip(expected, indices, strict=True))

    def first_attempts(self, chunk: int) -> tuple[int, ...] | None:
        """For a retry chunk, the attempt number each of its tasks starts at; else None."""
        found = self._retry.get(chunk)
        if found is None:
            return None
        return tuple(a + 1 for a in found[0].attempts[found[1]])

    def code(self, chunk: int) -> str | None:
        """The key of the code chunk ``chunk`` runs when a retry replaced the job's."""
        found = self._retry.get(chunk)
        return None if found is None else found[0].code

    def is_retry(self, chunk: int) -> bool:
        """True for a chunk of a retry round."""
        return chunk in self._retry


def read_rounds(store: Store, job: str) -> tuple[Round, ...]:
    """Every retry round of ``job``, in order (one listing, one read per round)."""
    specs: dict[int, str] = {}
    sent: set[int] = set()
    for key in store.list(layout.rounds_prefix(job)):
        try:
            number, name = layout.round_of_key(key)
        except ConfigError:
            continue
        if name == "round.json":
            specs[number] = key
        elif name == "sent":
            sent.add(number)
    rounds = []
    for number in sorted(specs):
        try:
            rounds.append(Round.from_json(store.get(specs[number]), number in sent))
        except ObjectNotFound:
            continue
        except (ValueError, KeyError, TypeError) as exc:
            raise JobError(f"job {job}: retry round {number} cannot be read: {exc}") from exc
    return tuple(rounds)


def read_plan(store: Store, job: str, manifest: dict[str, Any]) -> ChunkPlan:
    """The chunk plan of a job from its manifest and its stored rounds."""
    return ChunkPlan(
        job,
        int(manifest["tasks"]),
        int(manifest["chunk_size"]),
        int(manifest["chunks"]),
        read_rounds(store, job),
    )


def sender_gone(by: Any, since: float, now: float) -> bool:
    """True if the process that was sending (``{"host", "pid"}``) is known to be gone: on
    this host, it no longer runs; on another, it has not finished in a long while."""
    if not isinstance(by, dict):
        return now - since > SENDER_SILENCE_S
    if by.get("host") == socket.gethostname() and isinstance(by.get("pid"), int):
        try:
            os.kill(by["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    return now - since > SENDER_SILENCE_S
