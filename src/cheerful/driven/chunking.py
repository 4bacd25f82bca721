"""How many tasks go in each chunk: guided self-scheduling that adapts to task time.

Early chunks are big (a share of what remains), later ones shrink so that workers finish
together; once task times are measured, no chunk is made shorter than a couple of
milliseconds of work (so trivial tasks do not drown in per-chunk overhead) and none
carries more than a few megabytes of input. When the number of tasks is not known (items
read from an iterator as they are needed), chunks start at one task and grow, at most
eightfold from one to the next past a couple of milliseconds of work (so that every
worker gets a share of a short input), to some twenty milliseconds of work (a worker
waits for its next chunk, so each must be long enough to hide that wait), at most
``MAX_STREAM_CHUNK`` tasks.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["Chunker"]

MIN_CHUNK_SECONDS = 0.002
MAX_CHUNK_BYTES = 8 * 1024 * 1024
STREAM_CHUNK_SECONDS = 0.02
MAX_STREAM_CHUNK = 65_536
STREAM_GROWTH = 8
SHARES_PER_WORKER = 2


class Chunker:
    """Hands out ranges of task indices ``[start, stop)`` until all ``total`` are given
    (``total`` None: not known yet, see :meth:`end_at`)."""

    def __init__(
        self,
        total: int | None,
        workers: int,
        chunk_size: int | None = None,
        item_bytes: float = 0.0,
    ) -> None:
        self.total = total
        self.workers = max(1, workers)
        self.fixed = chunk_size
        self.item_bytes = item_bytes
        self._next = 0
        self._again: deque[tuple[int, int]] = deque()
        self._tasks_timed = 0
        self._seconds = 0.0
        self._tail = 0  # once the rest is too little to cut finely: the size of each share
        self._streamed = 0  # the size of the last chunk of an unknown number of tasks

    def has_more(self) -> bool:
        """True while some range is still to be handed out."""
        return bool(self._again) or self.total is None or self._next < self.total

    def take(self) -> tuple[int, int, bool]:
        """The next range to run, and whether it was given back by :meth:`again` (those
        come first)."""
        if self._again:
            return *self._again.popleft(), True
        start = self._next
        if self.total is None:
            self._next = start + self._stream_size()
        else:
            self._next = min(self.total, start + self._size(self.total - start))
        return start, self._next, False

    def end_at(self, total: int) -> None:
        """The tasks turn out to be ``total`` (the iterator ended): hand out none beyond."""
        self.total = total
        self._next = min(self._next, total)

    def again(self, start: int, stop: int) -> None:
        """Give a range back to be run again (its worker died)."""
        if stop > start:
            self._again.append((start, stop))

    @property
    def timed(self) -> bool:
        """True once some task times are known (the next sizes follow them)."""
        return self._tasks_timed > 0

    def observe(self, tasks: int, seconds: float) -> None:
        """Record that ``tasks`` tasks took ``seconds`` of worker time."""
        self._tasks_timed += tasks
        self._seconds += seconds

    def _stream_size(self) -> int:
        size = self.fixed or 1
        if not self.fixed and self._tasks_timed:
            per_task = max(self._seconds / self._tasks_timed, 1e-9)
            size = min(MAX_STREAM_CHUNK, math.ceil(STREAM_CHUNK_SECONDS / per_task))
            # growth is limited, but a chunk of a couple of milliseconds never is: it
            # could leave a worker idle for no longer than that
            floor = math.ceil(MIN_CHUNK_SECONDS / per_task)
            size = min(size, max(floor, STREAM_GROWTH * self._streamed))
        if not self.fixed and self.item_bytes > 0:
            size = min(size, max(1, int(MAX_CHUNK_BYTES // self.item_bytes)))
        self._streamed = size
        return size

    def _size(self, remaining: int) -> int:
        if self.fixed:
            return min(self.fixed, remaining)
        size = math.ceil(remaining / (SHARES_PER_WORKER * self.workers))
        if self._tail:
            size = self._tail
        elif self._tasks_timed:
            per_task = max(self._seconds / self._tasks_timed, 1e-9)
            floor = math.ceil(MIN_CHUNK_SECONDS / per_task)
            if floor > size:  # cutting finer would cost more than it balances:
                self._tail = size = math.ceil(remaining / self.workers)  # equal shares
        if self.item_bytes > 0:
            size = min(size, max(1, int(MAX_CHUNK_BYTES // self.item_bytes)))
        return max(1, min(size, remaining))
