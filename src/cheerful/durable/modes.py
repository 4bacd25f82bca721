"""Script mode and command mode, as plain picklable callables of one env dict.

A durable job always stores one callable and gives each task one item. For
``cf.submit_script`` the callable is a :class:`ScriptTask` and the item an env: the
script runs with the env's names as its globals and the task's result is its top-level
``result`` (None if it sets none). For ``cf.submit_command`` it is a :class:`CommandTask`:
any program (R, Julia, a shell line) runs with the env added to its environment variables
(values ``str()``'d); the result is a :class:`CommandResult` (or, with ``output="json"``,
the one JSON value the program printed), and a non-zero exit raises
:class:`~cheerful.errors.CommandFailed` so the task counts as failed.

What a script or program prints goes to the task's log as it runs; a program's standard
output and standard error are relayed by one reader, so the log keeps the order in which
they were written.
"""

from __future__ import annotations

import builtins
import codecs
import json
import linecache
import os
import selectors
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cheerful.errors import CommandFailed

__all__ = ["CommandResult", "CommandTask", "ScriptTask"]

TASK_MODULE_NAME = "__cheerful_task__"
"""``__name__`` inside a script task, so ``if __name__ == "__main__":`` blocks do not run."""
STDERR_TAIL_LINES = 20
"""Lines of standard error kept for a failed command's message."""
STDERR_KEPT = 64 * 1024
"""Bytes of standard error kept while a command runs (its tail makes the message)."""
OUTPUTS = ("text", "json")
"""What a command task's result is: its output as text, or the JSON value it printed."""
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

    A ``str`` runs through the shell (``sh -c``); a list is an argv run as it is. With
    ``output="json"`` the task's result is the one JSON value the program printed.
    """

    output = "text"  # commands pickled before ``output`` existed read as text

    def __init__(self, command: str | Sequence[str], output: str = "text") -> None:
        self.command = command if isinstance(command, str) else tuple(command)
        self.output = output

    def __repr__(self) -> str:
        return f"CommandTask({self.display!r})"

    @property
    def display(self) -> str:
        """The command as one line of text."""
        return self.command if isinstance(self.command, str) else shlex.join(self.command)

    def __call__(self, env: Mapping[str, Any]) -> Any:
        variables = {**os.environ, **{key: str(value) for key, value in env.items()}}
        shell = isinstance(self.command, str)
        argv = self.command if shell else list(self.command)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            proc = subprocess.Popen(
                argv,
                shell=shell,
                env=variables,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except (FileNotFoundError, PermissionError) as exc:  # an argv whose program is not here
            raise CommandFailed(127, "", f"{argv[0]}: {exc.strerror}", self.display) from None
        stdout, stderr = _relay(proc)
        code = proc.wait()
        if code != 0:
            tail = "".join(stderr.splitlines(keepends=True)[-STDERR_TAIL_LINES:])
            raise CommandFailed(code, stdout, tail, self.display)
        if self.output == "json":
            return _json_value(stdout, self.display)
        return CommandResult(code, stdout)


def _relay(proc: subprocess.Popen) -> tuple[str, str]:
    """Copy the program's stdout and stderr to ours (the task's log) as they come, in the
    order they come; return all of stdout and the tail of stderr. A background child that
    keeps a pipe open after the program exited is given :data:`PIPE_GRACE_S`."""
    streams = {proc.stdout: (sys.stdout, []), proc.stderr: (sys.stderr, [])}
    decoders = {pipe: codecs.getincrementaldecoder("utf-8")("replace") for pipe in streams}
    kept_err = 0
    with selectors.DefaultSelector() as selector:
        for pipe in streams:
            os.set_blocking(pipe.fileno(), False)
            selector.register(pipe, selectors.EVENT_READ)
        exited = None
        while selector.get_map():
            if exited is None and proc.poll() is not None:
                exited = time.monotonic()
            if exited is not None and time.monotonic() - exited > PIPE_GRACE_S:
                break
            for key, _ in selector.select(timeout=0.1):
                pipe = key.fileobj
                data = os.read(pipe.fileno(), 65536)
                if not data:
                    selector.unregister(pipe)
                    pipe.close()
                    continue
                text = decoders[pipe].decode(data)
                echo, kept = streams[pipe]
                echo.write(text)
                echo.flush()
                kept.append(text)
                if pipe is proc.stderr:
                    kept_err += len(text)
                    while kept_err > STDERR_KEPT and len(kept) > 1:
                        kept_err -= len(kept.pop(0))
    for pipe in streams:
        if not pipe.closed:
            pipe.close()
    return "".join(streams[proc.stdout][1]), "".join(streams[proc.stderr][1])


def _json_value(stdout: str, command: str) -> Any:
    """The one JSON value a command printed (``output="json"``)."""
    try:
        return json.loads(stdout)
    except ValueError as exc:
        start = stdout.strip()[:200] or "(nothing)"
        raise ValueError(
            f"the output of {command!r} is not one JSON value ({exc}); it printed: {start}"
        ) from None
