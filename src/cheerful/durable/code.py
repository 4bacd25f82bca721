"""The callable a durable job stores, made and checked before anything is stored or sent.

A job always stores one picklable callable and gives each task one item: the user's
function, a :class:`~.modes.ScriptTask` (a Python script run once per env) or a
:class:`~.modes.CommandTask` (a program run once per env). ``submit`` stores it at
``code.pkl``; a retry with fixed code stores its replacement with the retry's round.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cheerful.errors import ConfigError
from cheerful.serialize import check_function

from .modes import OUTPUTS, CommandTask, ScriptTask

__all__ = ["command_task", "function_code", "replacement_code", "script_task"]


def script_task(path: str | os.PathLike[str]) -> ScriptTask:
    """The task that runs the Python script at ``path`` (read and compiled now)."""
    try:
        source = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, TypeError) as exc:
        raise ConfigError(f"script {path!r} cannot be read: {exc}") from exc
    task = ScriptTask(source, os.fspath(Path(path).resolve()))
    try:
        task.compiled()
    except SyntaxError as exc:
        raise ConfigError(f"{path} line {exc.lineno}: {exc.msg}") from exc
    return task


def command_task(cmd: Any, output: str = "text") -> CommandTask:
    """The task that runs ``cmd`` (a shell line, or an argv list of strings) whose result is
    its output as text (``output="text"``) or the one JSON value it prints (``"json"``)."""
    if output not in OUTPUTS:
        raise ConfigError(f"output must be one of {', '.join(OUTPUTS)}, not {output!r}")
    if isinstance(cmd, str) and cmd.strip():
        return CommandTask(cmd, output)
    if isinstance(cmd, (list, tuple)) and cmd and all(isinstance(a, str) for a in cmd):
        return CommandTask(list(cmd), output)
    raise ConfigError(f"cmd must be a shell line or a non-empty list of strings, not {cmd!r}")


def function_code(fn: Callable) -> bytes:
    """``fn`` pickled, or a clear error if it is not a function or cannot travel."""
    if not callable(fn):
        raise ConfigError(f"the first argument must be a function, not {fn!r}")
    return check_function(fn)


def replacement_code(
    kind: str,
    *,
    fn: Callable | None = None,
    script: str | os.PathLike[str] | None = None,
    command: str | Sequence[str] | None = None,
) -> bytes | None:
    """The pickled code that replaces a ``kind`` job's for a retry (None: keep the job's).

    Give at most one of ``fn`` (a function job), ``script`` (a script job) and ``command``
    (a command job), of the job's own kind.
    """
    given = {name: v for name, v in (("fn", fn), ("script", script), ("command", command))}
    chosen = [name for name, value in given.items() if value is not None]
    if not chosen:
        return None
    wanted = {"function": "fn", "script": "script", "command": "command"}.get(kind)
    if len(chosen) > 1 or chosen[0] != wanted:
        raise ConfigError(
            f"a {kind} job's tasks are retried with new code given as {wanted}=..., "
            f"not {' and '.join(c + '=...' for c in chosen)}"
        )
    if kind == "script":
        return function_code(script_task(script))
    if kind == "command":
        return function_code(command_task(command))
    return function_code(fn)
