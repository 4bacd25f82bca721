"""What tasks said, said again in the caller: in task order, as their results arrive.

Workers keep each task's prints, warnings and log records (:mod:`cheerful.taskio`); a
chunk's result brings them back. ``cf.map`` replays them in input order: a task's output
comes out once every task before it has come back, whole, never two tasks mixed mid-line,
and before the exception of a failing task is raised (as R's future relays a future's
output when its value is collected). Once per map, a map whose unseeded tasks drew random
numbers is warned about (:mod:`cheerful.rngwatch`). ``cf.Executor``'s futures say what
their call said in their own way (:mod:`cheerful.driven.futures`).
"""

from __future__ import annotations

from typing import Any

from cheerful.rngwatch import warn_unseeded
from cheerful.task import ChunkResult
from cheerful.taskio import replay

__all__ = ["Relay"]


class Relay:
    """The outputs of one map's tasks, replayed in index order as results come back."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.unseeded = False
        self._pending: dict[int, Any] = {}  # task index -> its TaskOutput, not yet replayed
        self._finished: dict[int, int] = {}  # start -> stop of runs of finished tasks
        self._next = 0  # every task below has finished

    def add(self, result: ChunkResult) -> None:
        """A chunk came back: keep what its tasks said (replayed by :meth:`replay_ready`)."""
        self.unseeded = self.unseeded or result.unseeded
        if result.outputs:
            self._pending.update(result.outputs)
        indices = result.indices
        if isinstance(indices, range) and indices.step == 1:
            self._finished[indices.start] = indices.stop
        else:
            for index in indices:
                self._finished[index] = index + 1
        while self._next in self._finished:
            self._next = self._finished.pop(self._next)

    @property
    def finished_below(self) -> int:
        """Every task below this index has come back."""
        return self._next

    def output_of(self, index: int) -> Any:
        """What task ``index`` said (a TaskOutput), or None."""
        return self._pending.get(index)

    def replay_ready(self) -> None:
        """Say what every task below the first unfinished one said, in order."""
        if self._pending:
            self.replay_through(self._next - 1)

    def replay_through(self, last: int) -> None:
        """Say what tasks up to ``last`` said, in order (before ``last``'s error is raised)."""
        for index in sorted(i for i in self._pending if i <= last):
            replay(self._pending.pop(index), index)

    def replay_one(self, index: int) -> None:
        """Say what task ``index`` said, now (``cf.imap`` yields in completion order)."""
        output = self._pending.pop(index, None)
        if output is not None:
            replay(output, index)

    def finish(self, stacklevel: int = 5) -> None:
        """The map is over: say what is left, and warn if unseeded tasks drew randoms."""
        self.replay_through(max(self._pending, default=-1))
        if self.unseeded:  # stacklevel: the caller's line (finish, the map, its caller)
            warn_unseeded(self.label, stacklevel=stacklevel)
