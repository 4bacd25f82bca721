"""``cf.Executor``'s futures: each says what its call said (:mod:`cheerful.taskio`).

A :class:`TaskFuture` replays what its call printed, warned and logged in its worker when
its result is first asked for, when the future is dropped unasked, or when the executor
shuts down. Apart from :mod:`cheerful.driven.relay` (what a map's tasks said, replayed in
task order), so that a map never loads :mod:`concurrent.futures`.
"""

from __future__ import annotations

import weakref
from concurrent import futures
from typing import Any

from cheerful.taskio import replay

__all__ = ["TaskFuture", "say_unheard"]


class TaskFuture(futures.Future):
    """A :class:`concurrent.futures.Future` that says what its call printed, warned and
    logged in its worker (:mod:`cheerful.taskio`) when its result is first asked for; a
    future nobody asks says it when it is dropped, or when the executor shuts down."""

    _said: list | None = None

    def hold_output(self, output: Any, index: int) -> list:
        """Keep what call ``index`` said, to be replayed once; returns its holder (what
        :func:`say_unheard` takes), which holds nothing of the call's value."""
        self._said = [(output, index)]
        weakref.finalize(self, say_unheard, self._said)  # dropped unasked: say it then
        return self._said

    def result(self, timeout: float | None = None) -> Any:
        """The call's value, as ``Future.result``; its output is replayed first."""
        try:
            return super().result(timeout)
        finally:
            self.relay()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The call's exception, as ``Future.exception``; its output is replayed first."""
        try:
            return super().exception(timeout)
        finally:
            self.relay()

    def relay(self) -> None:
        """Say what the call said, if it finished and it was not said yet."""
        if self._said and self.done():
            say_unheard(self._said)


def say_unheard(said: list) -> None:
    """Replay what a held call said (a :meth:`TaskFuture.hold_output` holder), once."""
    try:
        output, index = said.pop()  # atomic: two threads asking at once say it once
    except IndexError:
        return
    replay(output, index)
