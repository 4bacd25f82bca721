"""The one exception hierarchy of cheerful.

Every error cheerful raises on its own account derives from :class:`CheerfulError`.
An exception raised *by a task* re-raises in the caller as its own type (with the remote
traceback as ``__cause__``); only when it cannot travel back does it become a
:class:`TaskError`.

::

    CheerfulError                       root of everything cheerful raises
    ├── ConfigError (ValueError)        bad argument, plan, backend URL or envs file; says what to do
    ├── SerializationError (TypeError, PicklingError)  a function, argument or result cannot be pickled
    │   ├── RebuildFailed (BrokenProcessPool)  it was pickled, but cannot be rebuilt on the other side
    │   └── FunctionTooLarge            a task's function with what it captures is over the limit
    ├── TaskError                       a task failed and its exception could not be rebuilt here
    │   ├── WorkerCrashed (BrokenProcessPool)  the process running a task died (signal, exit code, OOM)
    │   └── TaskTimeout (TimeoutError)  a task ran longer than its ``timeout``
    ├── BrokenPlan (BrokenExecutor)     a plan can no longer run tasks (all workers gone)
    │   └── HostUnreachable             an SSH host cannot be reached or was cut off
    ├── JobError                        a durable job cannot do what was asked
    │   ├── JobNotFound (KeyError)      no job with that id in the backend
    │   ├── JobFailed                   ``results()`` met failed tasks (``errors="raise"``)
    │   └── WaitTimeout (TimeoutError)  ``Job.wait(timeout=...)`` ran out before the job finished
    ├── BackendError                    the queue or store failed (I/O, service, permissions)
    │   ├── QueueError                  the queue failed, or a receipt is stale
    │   ├── StoreError                  the store failed
    │   │   └── ObjectNotFound (KeyError)  a key is absent from the store
    │   └── FleetError                  EC2, IAM or SSM refused or failed a fleet request
    └── CommandFailed                   a command-mode task exited with a non-zero code

    KeyboardInterrupt
    └── JobInterrupted                  Ctrl-C stopped a map on a durable plan; the job goes on

The warning that goes with ``FunctionTooLarge`` (a ``UserWarning``,
:class:`~cheerful.globals_guard.LargeFunctionWarning`) lives beside the code that measures.
"""

from __future__ import annotations

import pickle
from typing import Any

__all__ = [
    "BackendError",
    "BrokenPlan",  # noqa: F822 - made on first use, see __getattr__
    "CheerfulError",
    "CommandFailed",
    "ConfigError",
    "FleetError",
    "FunctionTooLarge",
    "HostUnreachable",  # noqa: F822 - made on first use, see __getattr__
    "JobError",
    "JobFailed",
    "JobInterrupted",
    "JobNotFound",
    "ObjectNotFound",
    "QueueError",
    "RebuildFailed",  # noqa: F822 - made on first use, see __getattr__
    "SerializationError",
    "StoreError",
    "TaskError",
    "TaskTimeout",
    "WaitTimeout",
    "WorkerCrashed",  # noqa: F822 - made on first use, see __getattr__
]


class CheerfulError(Exception):
    """Root of every error cheerful raises on its own account."""


class ConfigError(CheerfulError, ValueError):
    """A bad argument, plan, backend URL or input file; the message says what to do."""


class SerializationError(CheerfulError, TypeError, pickle.PicklingError):
    """A function, an argument or a result cannot be serialized with cloudpickle."""


class FunctionTooLarge(SerializationError):
    """A task's function, pickled with what it captures (closure variables, globals sent by
    value, defaults, a bound method's ``self``, a partial's arguments), is over the limit
    (``CHEERFUL_GLOBALS_MAX``, default 1 GB); nothing was run. ``size`` and ``limit`` are in
    bytes; ``biggest`` lists the largest captured objects as ``(name, bytes, kind)``."""

    def __init__(
        self, message: str = "", *, size: int = 0, limit: float = 0, biggest: list | None = None
    ) -> None:
        super().__init__(message)
        self.size, self.limit, self.biggest = size, limit, biggest or []


class TaskError(CheerfulError):
    """A task failed and its own exception could not be rebuilt in the caller.

    ``index`` is the task's position in the input, ``type_name`` the remote exception's
    qualified type name and ``remote_traceback`` its formatted traceback text.
    """

    def __init__(
        self,
        message: str,
        *,
        index: int | None = None,
        type_name: str = "",
        remote_traceback: str = "",
    ) -> None:
        super().__init__(message)
        self.index = index
        self.type_name = type_name
        self.remote_traceback = remote_traceback

    def __reduce__(self):  # keep keyword state across pickling
        return (
            _rebuild_task_error,
            (type(self), self.args[0] if self.args else "", self.__dict__),
        )


def _rebuild_task_error(cls, message, state):
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class TaskTimeout(TaskError, TimeoutError):
    """A task ran longer than its ``timeout`` and was stopped."""


class JobError(CheerfulError):
    """A durable job cannot do what was asked."""


class JobNotFound(JobError, KeyError):
    """No job with that id exists in the backend."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class JobFailed(JobError):
    """``Job.results()`` met failed tasks while ``errors="raise"``; ``failures`` lists them."""

    def __init__(self, message: str, failures: list | None = None) -> None:
        super().__init__(message)
        self.failures = failures or []


class BackendError(CheerfulError):
    """The queue or the store of a backend failed."""


class QueueError(BackendError):
    """The queue failed, or an operation used a stale receipt."""


class StoreError(BackendError):
    """The store failed."""


class FleetError(BackendError):
    """EC2, IAM or SSM refused or failed a request of ``cheerful fleet``."""


class ObjectNotFound(StoreError, KeyError):
    """A key is absent from the store."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class WaitTimeout(JobError, TimeoutError):
    """``Job.wait(timeout=...)`` ran out before the job finished; the job goes on."""


class CommandFailed(CheerfulError):
    """A command-mode task's program exited with a non-zero code (or was killed).

    ``exit_code`` is the code (negative: killed by that signal), ``stdout`` what the
    program printed, ``stderr_tail`` the last lines of its standard error and ``command``
    what ran.
    """

    def __init__(
        self, exit_code: int, stdout: str = "", stderr_tail: str = "", command: str = ""
    ) -> None:
        if exit_code < 0:
            how = f"was killed by signal {-exit_code}"
        elif exit_code == 127:
            how = "exited with code 127: its program was not found on the worker (install it "
            how += "there, e.g. with `cheerful fleet up --setup`)"
        else:
            how = f"exited with code {exit_code}"
        what = f"command {command!r}" if command else "command"
        headline = _error_line(stderr_tail)
        message = f"{headline} ({what} {how})" if headline else f"{what} {how}"
        if stderr_tail.strip() and stderr_tail.strip() != headline:
            message += "\n" + stderr_tail.rstrip("\n")
        super().__init__(message)
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr_tail = stderr_tail
        self.command = command

    def __reduce__(self):  # rebuild from the fields, not from the message
        return (type(self), (self.exit_code, self.stdout, self.stderr_tail, self.command))


def _error_line(stderr: str) -> str:
    """The line of a program's stderr that says what went wrong: the last one that names
    an error ("Error in ...", "ValueError: ..."), else the last one."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if "error" in line.lower():
            return line
    return lines[-1] if lines else ""


class JobInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a ``cf.map`` on a durable plan (``cf.durable_jobs``): the job goes on
    in the store. ``job_id`` and ``backend`` name it; the message says how to reattach
    (``cf.Job.attach(job_id, backend).results()``) and how to start workers for it. It is a
    ``KeyboardInterrupt``: code that stops on Ctrl-C stops on it too."""

    def __init__(self, message: str, job_id: str = "", backend: str = "") -> None:
        super().__init__(message)
        self.job_id, self.backend = job_id, backend


# --- the errors that are also concurrent.futures' ---------------------------------------
# RebuildFailed, WorkerCrashed, BrokenPlan and HostUnreachable derive from
# concurrent.futures' BrokenProcessPool and BrokenExecutor, so that code written for
# ProcessPoolExecutor catches them. Loading concurrent.futures (and logging with it) takes
# longer than the rest of what cf.map needs, so they are made when first asked for.

_FUTURES_KIN = ("RebuildFailed", "WorkerCrashed", "BrokenPlan", "HostUnreachable")


def __getattr__(name: str) -> Any:
    if name in _FUTURES_KIN:
        globals().update(_futures_kin())
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _futures_kin() -> dict[str, type]:
    from concurrent.futures import BrokenExecutor
    from concurrent.futures.process import BrokenProcessPool

    class RebuildFailed(SerializationError, BrokenProcessPool):
        """A call, its inputs or its result were pickled but cannot be unpickled on the
        other side (a module missing there, a failing ``__reduce__``). Only that task
        fails; it is also a ``BrokenProcessPool``, which ``ProcessPoolExecutor`` raises
        in that case."""

    class WorkerCrashed(TaskError, BrokenProcessPool):
        """The process running a task died: a segfault, ``os._exit``, or a kill (often OOM).

        ``exitcode`` is the exit code when it exited, ``signal`` the signal's name when
        killed. Only that task fails (its worker is replaced); it is also a
        ``BrokenProcessPool``, the error ``ProcessPoolExecutor`` raises when one of its
        processes dies.
        """

        def __init__(
            self,
            message: str,
            *,
            index: int | None = None,
            exitcode: int | None = None,
            signal: str | None = None,
        ) -> None:
            super().__init__(message, index=index, type_name="WorkerCrashed")
            self.exitcode = exitcode
            self.signal = signal

    class BrokenPlan(CheerfulError, BrokenExecutor):
        """A plan can no longer run tasks, for example every worker or host is gone."""

    class HostUnreachable(BrokenPlan):
        """An SSH host cannot be reached at start, or was cut off and no host is left."""

    made = {c.__name__: c for c in (RebuildFailed, WorkerCrashed, BrokenPlan, HostUnreachable)}
    for cls in made.values():
        cls.__qualname__ = cls.__name__  # pickled by name, as any module-level class
    return made
