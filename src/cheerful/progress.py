"""Progress as events: the library reports, a renderer (rich, or your callback) shows.

``progress=True`` renders a rich bar on stderr (terminal or Jupyter); ``progress=False``
shows nothing; a callable receives every event as keyword arguments, s3transfer style:
``callback(event="advance", done=10, total=100, failed=0, description="cf.map")``.
Handlers should accept ``**kwargs`` so that new fields never break them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["Reporter", "reporter"]


class Reporter:
    """Counts tasks and forwards ``start``/``advance``/``finish`` events to a handler."""

    def __init__(self, handler: Callable[..., Any] | None, total: int, description: str) -> None:
        self.handler = handler
        self.total = total
        self.description = description
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()

    def _emit(self, event: str) -> None:
        if self.handler is not None:
            self.handler(
                event=event,
                done=self.done,
                total=self.total,
                failed=self.failed,
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
        self._emit("advance")

    def finish(self) -> None:
        """The work ended (completed or not); renderers clean up here."""
        self._emit("finish")

    def __enter__(self) -> Reporter:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.finish()


def reporter(progress: bool | Callable[..., Any], total: int, description: str) -> Reporter:
    """A reporter for ``progress``: True (rich bar), False (silent) or a callable."""
    if progress is True:
        from .progress_rich import RichBar

        return Reporter(RichBar(), total, description)
    if callable(progress):
        return Reporter(progress, total, description)
    return Reporter(None, total, description)
