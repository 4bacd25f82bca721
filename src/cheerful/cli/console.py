"""What every ``cheerful`` command shares: the consoles, the error line, common options.

No markup: task messages, labels and paths are printed as they are. A cheerful error (a
bad envs file, an unknown job, ...) prints one ``Error: ...`` line and exits with code 2.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from typing import Any

import click

from cheerful.errors import CheerfulError

__all__ = [
    "BACKEND_HELP",
    "CheerfulCommandError",
    "CommandGroup",
    "LazyConsole",
    "backend_option",
    "command_line",
    "err",
    "out",
    "plural",
    "submit_options",
]

BACKEND_HELP = (
    "backend URL: 'local' (./.cheerful), 'local:///abs/path' or "
    "'s3://bucket/prefix?region=R' (SQS + S3) [env CHEERFUL_BACKEND]"
)
REDIRECTED_WIDTH = 200
"""Columns of the output when it is not a terminal, so that tables are not squeezed."""

class LazyConsole:
    """A rich ``Console`` made on first use: a command that prints nothing through it (a
    worker, busy from its first second) does not pay rich's import."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Any = None

    @property
    def console(self) -> Any:
        """The rich ``Console`` itself (for rich's ``Live`` and ``Progress``)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.console, name)


_width = None if sys.stdout.isatty() else REDIRECTED_WIDTH
out = LazyConsole(highlight=False, markup=False, soft_wrap=True, width=_width)
"""Standard output: what a command answers (ids, tables, results)."""
err = LazyConsole(stderr=True, highlight=False, markup=False, soft_wrap=True)
"""Standard error: progress, advice and summaries."""


class CheerfulCommandError(click.ClickException):
    """A cheerful error, shown as one ``Error: ...`` line; exit code 2."""

    exit_code = 2


class CommandGroup(click.Group):
    """Turns every :class:`~cheerful.errors.CheerfulError` into a clean ``Error:`` line.

    ``lazy`` names commands by ``"module:attribute"`` (relative to :mod:`cheerful.cli`):
    each loads when it is run or listed, so ``cheerful worker`` imports only the worker's."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            import importlib

            module, attribute = self.lazy[cmd_name].split(":")
            self.add_command(getattr(importlib.import_module(module, "cheerful.cli"), attribute))
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CheerfulError as exc:
            raise CheerfulCommandError(str(exc)) from None


def backend_option(fn: Callable) -> Callable:
    """The ``--backend`` option of a command (default ``local``, or ``CHEERFUL_BACKEND``)."""
    return click.option(
        "--backend",
        default="local",
        envvar="CHEERFUL_BACKEND",
        show_default=True,
        help=BACKEND_HELP,
    )(fn)


def submit_options(fn: Callable) -> Callable:
    """Options shared by ``run`` and ``submit``."""
    options = [
        click.option(
            "--envs",
            "envs",
            required=True,
            type=click.Path(dir_okay=False),
            help="one env per task: JSON lines or CSV with a header",
        ),
        click.option(
            "--retries",
            type=click.IntRange(min=0),
            default=2,
            show_default=True,
            help="runs again a task that raised, up to this many more times",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0, min_open=True),
            help="seconds after which a task is stopped (and counts as failed)",
        ),
        click.option("--name", help="a name for the job: its id starts with it"),
        click.option(
            "--seed", type=click.IntRange(min=0), help="per-task reproducible random streams"
        ),
        click.option(
            "--chunk-size", type=click.IntRange(min=1), help="tasks per chunk (default: automatic)"
        ),
        click.option(
            "--workdir",
            type=click.Path(file_okay=False),
            help="a directory shipped with the job: each task runs in its own copy of it",
        ),
        click.option(
            "--files",
            multiple=True,
            type=click.Path(),
            help="a file or directory shipped with the job, at the top of each task's "
            "directory (repeat for several; a command's own files ship by themselves)",
        ),
        click.option(
            "--output",
            type=click.Choice(["text", "json"]),
            default="text",
            show_default=True,
            help="command jobs: a task's result is its output as text, or the JSON value it prints",
        ),
        click.option(
            "--dry-run", is_flag=True, help="check everything and say what would be submitted"
        ),
        backend_option,
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def command_line(name: str, backend: str, *args: str) -> str:
    """A ``cheerful`` command line to suggest, with ``--backend`` unless it is the default."""
    words = ["cheerful", name, *args]
    if backend != "local":
        words += ["--backend", shlex.quote(backend)]
    return " ".join(words)


def plural(count: int, word: str) -> str:
    """``"1 task"``, ``"2 tasks"``."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"
