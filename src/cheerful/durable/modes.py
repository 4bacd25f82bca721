"""Script mode and command mode, as plain picklable callables of one env dict.

A durable job always stores one callable and gives each task one item. For
``cf.submit_script`` the callable is a :class:`ScriptTask` and the item an env: the
script runs with the env's names as its globals and the task's result is its top-level
``result`` (None if it sets none). For ``cf.submit_command`` it is a :class:`CommandTask`:
any program (R, Julia, a shell line) runs with the env added to its environment variables
(values ``str()``'d); the result is a :class:`CommandResult`, and a non-zero exit raises
:class:`~cheerful.errors.CommandFailed` so the task counts as failed.

What a script or program prints goes to the task's log as it runs.
"""

from __future__ import annotations

import builtins
import collections
import linecache
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cheerful.errors import CommandFailed

__all__ = ["CommandResult", "CommandTask", "ScriptTask"]

TASK_MODULE_NAME = "__cheerful_task__"
"""``__name__`` inside a script task, so ``if __name__ == "__main__":`` blocks do not run."""
STDERR_TAIL_LINES = 20
"""Lines of standard error kept for a failed command's message."""
PIPE_GRACE_S = 10.0
"""How long to wait for a command's output after it exited."""


class ScriptTask:
    """Run the Python ``source`` (from ``filename``) with an env's names as its globals."""

    def __init__(self, source: str, filename: str) -> None:
        self.source = source
        self.filename = filename
        self._code = None

    def __getstate__(self) -> dict[str, Any]:
        return {"source": self.source, "filename": self.filename}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["source"], state["filename"])

    def __repr__(self) -> str:
        return f"ScriptTask({self.filename!r})"

    def compiled(self):
        """The script's code object (a SyntaxError says the file and line)."""
        if self._code is None:
            self._code = compile(self.source, self.filename, "exec")
            lines = self.source.splitlines(keepends=True)
            # Tracebacks show the script's lines even where the file does not exist.
            linecache.cache[self.filename] = (len(self.source), None, lines, self.filename)
        return self._code

    def __call__(self, env: Mapping[str, Any]) -> Any:
        namespace = {"__name__": TASK_MODULE_NAME, "__file__": self.filename}
        namespace["__builtins__"] = builtins
        namespace.update(env)
        exec(self.compiled(), namespace)
        return namespace.get("result")


@dataclass(frozen=True)
class CommandResult:
    """What a command-mode task produced: its ``exit_code`` (0) and its ``stdout``."""

    exit_code: int
    stdout: str


class CommandTask:
    """Run ``command`` with an env added to the environment variables.

    A ``str`` runs through the shell (``sh -c``); a list is an argv run as it is.
    """

    def __init__(self, command: str | Sequence[str]) -> None:
        self.command = command if isinstance(command, str) else tuple(command)

    def __repr__(self) -> str:
        return f"CommandTask({self.display!r})"

    @property
    def display(self) -> str:
        """The command as one line of text."""
        return self.command if isinstance(self.command, str) else shlex.join(self.command)

    def __call__(self, env: Mapping[str, Any]) -> CommandResult:
        variables = {**os.environ, **{key: str(value) for key, value in env.items()}}
        shell = isinstance(self.command, str)
        argv = self.command if shell else list(self.command)
        sys.stdout.flush()
        sys.stderr.flush()
        proc = subprocess.Popen(
            argv,
            shell=shell,
            env=variables,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out: list[str] = []
        err: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        readers = [
            _tee(proc.stdout, sys.stdout, out.append),
            _tee(proc.stderr, sys.stderr, err.append),
        ]
        code = proc.wait()
        for reader in readers:  # a background child may hold a pipe open: do not hang on it
            reader.join(PIPE_GRACE_S)
        stdout = "".join(out)
        if code != 0:
            raise CommandFailed(code, stdout, "".join(err), self.display)
        return CommandResult(code, stdout)


def _tee(pipe, echo, keep) -> threading.Thread:
    """Copy ``pipe``'s lines to ``echo`` (the task's log) and to ``keep``, in a thread."""

    def copy() -> None:
        with pipe:
            for raw in iter(pipe.readline, b""):
                line = raw.decode("utf-8", errors="replace")
                keep(line)
                echo.write(line)
                echo.flush()

    thread = threading.Thread(target=copy, daemon=True)
    thread.start()
    return thread
