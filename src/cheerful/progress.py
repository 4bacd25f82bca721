"""Progress as events: the library reports, a renderer (rich, or your callback) shows.

``progress=True`` renders a rich bar on stderr (terminal or Jupyter); ``progress=False``
shows nothing; a callable receives every event as keyword arguments, s3transfer style:
``callback(event="advance", done=10, total=100, failed=0, description="cf.map")``;
``running`` is how much of the tasks still running is done, summed, as they report it
with ``cf.task_progress`` (so ``done + running`` moves smoothly through long tasks).
Handlers should accept ``**kwargs`` so that new fields never break them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .task import current_task

__all__ = ["PARTIAL_S", "Reporter", "reporter"]

PARTIAL_S = 0.1
"""Seconds at least between two events about running tasks' progress."""


class Reporter:
    """Counts tasks and forwards ``start``/``advance``/``finish`` events to a handler."""

    def __init__(
        self, handler: Callable[..., Any] | None, total: int | None, description: str
    ) -> None:
        self.handler = handler
        self.total = total
        self.description = description
        self.done = 0
        self.failed = 0
        self.running = 0.0  # the share of running tasks done (cf.task_progress), summed
        self._said_partial = 0.0
        self.started = time.monotonic()
        outer = current_task()  # a task this map runs inside hears how far the map is
        self.above = outer.on_progress if outer is not None else None

    def _emit(self, event: str) -> None:
        if self.above is not None and self.total:
            self.above(min(1.0, (self.done + self.running) / self.total))
        if self.handler is not None:
            self.handler(
                event=event,
                done=self.done,
                total=self.total,
                failed=self.failed,
                running=self.running,
                elapsed=time.monotonic() - self.started,
                description=self.description,
            )

    def start(self) -> None:
        """The work began."""
        self._emit("start")

    def advance(self, done: int = 1, failed: int = 0) -> None:
        """``done`` more tasks finished, ``failed`` of them with an error."""
        self.done += done
        self.failed += failed
        self.running = max(0.0, self.running - done)  # those tasks' shares are in done now
        self._emit("advance")

    def partial(self, running: float) -> None:
        """Tasks still running have done ``running`` (a sum of shares of one task)."""
        now = time.monotonic()
        if abs(running - self.running) >= 1e-3 and now - self._said_partial >= PARTIAL_S:
            self.running, self._said_partial = running, now
            self._emit("advance")

    @property
    def wants_ticks(self) -> bool:
        """True when someone hears progress (a bar, a callback, a task above this map)."""
        return self.handler is not None or self.above is not None

    def finish(self) -> None:
        """The work ended (completed or not); renderers clean up here."""
        self._emit("finish")

    def __enter__(self) -> Reporter:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.finish()


def reporter(
    progress: bool | Callable[..., Any], total: int | None, description: str
) -> Reporter:
    """A reporter for ``progress``: True (rich bar), False (silent) or a callable."""
    if progress is True:
        from .progress_rich import RichBar

        return Reporter(RichBar(), total, description)
    if callable(progress):
        return Reporter(progress, total, description)
    return Reporter(None, total, description)
