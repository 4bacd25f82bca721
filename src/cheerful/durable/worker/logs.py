"""Task logs: cut a chunk's output file into the log of each task attempt and store it.

A slot writes everything a chunk prints (fds 1 and 2) to ``<log_dir>/<work_id>.log`` and
reports each task's byte span (:class:`~cheerful.durable.worker.slots.LoggedResult`). A task that printed
anything or failed gets ``jobs/<job>/logs/<task>.<attempt>``: its output, then its
traceback (or the reason its process died). Tasks that succeeded silently cost nothing.
"""

from __future__ import annotations

import time
from pathlib import Path

from cheerful.errors import BackendError
from cheerful.task import ChunkResult, ErrorInfo

from .. import layout
from .events import Run
from .slots import LoggedResult, log_path
from .storing import StoreTrouble

__all__ = ["TaskLogs", "failure_note"]

_LAST_ATTEMPT = 10**layout.ATTEMPT_WIDTH - 1


class TaskLogs:
    """Stores the logs of the runs of one worker, whose slots write under ``log_dir``."""

    def __init__(self, store, log_dir: str, trouble: StoreTrouble | None = None) -> None:
        self.store, self.log_dir = store, log_dir
        self.trouble = trouble or StoreTrouble(None)

    def done(self, run: Run, result: ChunkResult) -> dict[int, str]:
        """Store the logs of a finished run; return the key of each one stored."""
        output = result.output if isinstance(result, LoggedResult) else {}
        if not output and not result.errors:
            return {}
        path = log_path(self.log_dir, run.work_id)
        data = _read(path) if output else b""
        self.discard(run.work_id)
        logs = {}
        for index, attempt in zip(run.indices, run.attempts, strict=True):
            span, error = output.get(index), result.errors.get(index)
            if span is None and error is None:
                continue
            text = data[span[0] : span[1]] if span else b""
            if error is not None:
                text += _newline(text) + failure_note(error).encode("utf-8", "replace")
            logs[index] = self._put(run.job.id, index, attempt, text)
        return {i: key for i, key in logs.items() if key}

    def crashed(self, run: Run, index: int, start: int, why: str) -> str:
        """Store the log of task ``index``, whose process died while it ran (its output
        began at byte ``start``); return its key ("" if none was stored)."""
        attempt = run.attempts[run.indices.index(index)]
        text = _read(log_path(self.log_dir, run.work_id))[start:]
        text += _newline(text) + f"[cheerful] task {index} {why}\n".encode()
        return self._put(run.job.id, index, attempt, text)

    def discard(self, work_id: int) -> None:
        """Remove a run's output file."""
        Path(log_path(self.log_dir, work_id)).unlink(missing_ok=True)

    def _put(self, job: str, index: int, attempt: int, text: bytes) -> str:
        key = layout.log(job, index, min(attempt, _LAST_ATTEMPT))
        try:
            self.store.put(key, text)
        except BackendError as exc:
            self.trouble.failed(time.monotonic(), f"storing the log of task {index}", exc)
            return ""
        self.trouble.ok()
        return key


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except FileNotFoundError:
        return b""


def _newline(text: bytes) -> bytes:
    """A newline to end ``text`` with, if it needs one."""
    return b"\n" if text and not text.endswith(b"\n") else b""


def failure_note(error: ErrorInfo) -> str:
    """What a failed attempt's log ends with: the traceback of a Python task; for a
    command, which only says how it ended (its own output is the log), one line."""
    if error.type_name.endswith("CommandFailed"):
        first = error.message.splitlines()[0] if error.message else "the command failed"
        return f"[cheerful] {first}\n"
    return error.traceback
