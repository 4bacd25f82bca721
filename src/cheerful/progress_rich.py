"""The rich renderer of progress events: a bar with done / total, rate and ETA.

It draws on stderr. In a terminal or in Jupyter the bar is live; when stderr is neither
(a log file, a pipe, CI), nothing is redrawn and one summary line is printed at the end,
so redirected output is never garbled.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = ["RichBar"]


class _RateColumn(ProgressColumn):
    """Tasks per second."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.1f} tasks/s", style="progress.data.speed")


class RichBar:
    """A progress handler (see :mod:`cheerful.progress`) that renders with rich."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal or self.console.is_jupyter
        self._progress: Progress | None = None
        self._task: Any = None

    def __call__(self, *, event: str, done: int, total: int, **fields: Any) -> None:
        if not self.live:
            if event == "finish":
                self._summary(done, total, **fields)
            return
        if event == "start":
            self._open(total, fields.get("description", "tasks"))
        elif self._progress is not None:
            completed = done + fields.get("running", 0.0)
            self._progress.update(self._task, completed=completed, description=self._label(fields))
            if event == "finish":
                self._progress.stop()
                self._progress = None

    def _open(self, total: int, description: str) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(description, total=total)

    @staticmethod
    def _label(fields: dict) -> str:
        failed = fields.get("failed", 0)
        description = fields.get("description", "tasks")
        return f"{description} [red]({failed} failed)" if failed else description

    def _summary(self, done: int, total: int, **fields: Any) -> None:
        elapsed = fields.get("elapsed", 0.0) or 1e-9
        failed = fields.get("failed", 0)
        note = f", {failed} failed" if failed else ""
        self.console.print(
            f"{fields.get('description', 'tasks')}: {done}/{total} tasks{note} in "
            f"{elapsed:.2f} s ({done / elapsed:.1f} tasks/s)",
            highlight=False,
            soft_wrap=True,
        )
