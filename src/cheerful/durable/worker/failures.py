"""The outcomes the worker itself gives a task that did not end on its own: its process
died under it, it overran its timeout, or its slot sent back nothing for it."""

from __future__ import annotations

from cheerful.errors import TaskTimeout
from cheerful.serialize import dumps
from cheerful.task import ErrorInfo

from .events import JobSpec

__all__ = ["crash_error", "missing_outcome", "timeout_error"]


def missing_outcome(index: int) -> ErrorInfo:
    """A task its slot sent back no outcome for."""
    message = f"task {index}: the worker's slot sent back no outcome for it"
    return ErrorInfo("cheerful.errors.TaskError", message, message + "\n")


def crash_error(index: int, reason: str, exitcode: int | None, signal: str | None) -> ErrorInfo:
    """A task whose process died under it (as :func:`cheerful.driven.scheduler.crash_result`)."""
    message = f"task {index} crashed: {reason}"
    crash = {"exitcode": exitcode, "signal": signal}
    return ErrorInfo("cheerful.errors.WorkerCrashed", message, message + "\n", b"", crash)


def timeout_error(index: int, job: JobSpec) -> ErrorInfo:
    """A task the worker stopped because it overran the job's timeout."""
    message = f"task {index} ran longer than its timeout of {job.timeout:g} s and was stopped"
    return ErrorInfo.from_exception(
        TaskTimeout(message, index=index, type_name="TaskTimeout"), dumps
    )
