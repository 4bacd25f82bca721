"""What a worker holds: a received chunk and the progress of its tasks (:class:`HeldChunk`),
and the small rules the state machine applies to it."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from cheerful.task import ErrorInfo

from ..messages import ChunkMessage
from .events import JobSpec

__all__ = ["HeldChunk", "note_log", "out_of_range", "unzip"]


@dataclass
class HeldChunk:
    """A held message and the progress of its tasks (mutable: the state machine's own)."""

    receipt: str
    message: ChunkMessage
    job: JobSpec
    inputs: bytes
    values: dict[int, Any] = field(default_factory=dict)
    errors: dict[int, ErrorInfo] = field(default_factory=dict)
    attempts: dict[int, int] = field(default_factory=dict)
    first: dict[int, int] = field(default_factory=dict)  # attempt each task starts at
    code: str | None = None
    logs: dict[int, str] = field(default_factory=dict)
    seconds_each: dict[int, float] = field(default_factory=dict)
    todo: deque[tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=deque)
    runs: set[int] = field(default_factory=set)
    seconds: float = 0.0
    started: bool = False
    since: float = 0.0  # when its first run was dispatched
    recording: bool = False
    lost: bool = False
    start_crashes: int = 0


def out_of_range(indices: Any, tasks: int) -> bool:
    """True if a task number is not below ``tasks`` or appears twice."""
    if isinstance(indices, range):
        return indices.step != 1 or len(indices) == 0 or indices[-1] >= tasks
    return any(i >= tasks for i in indices) or len(set(indices)) != len(indices)


def note_log(chunk: HeldChunk, index: int, key: str) -> None:
    """The record names the log of a task's last attempt; none if that one was silent."""
    if key:
        chunk.logs[index] = key
    else:
        chunk.logs.pop(index, None)


def unzip(pairs: list[tuple[int, int]]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``[(task, attempt), ...]`` as ``(tasks, attempts)``."""
    return tuple(i for i, _ in pairs), tuple(a for _, a in pairs)
