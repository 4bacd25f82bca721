"""The callable a durable plan submits: the user's function with what the plan adds.

A durable worker calls a job's function with one item, seeded by the task's index in the
job, with no plan levels in force. The plan may need more: the item unpacked into
arguments (``starmap``), the inner levels of a nested plan in force while the task runs, and
(for an ``Executor`` batch, whose tasks are numbered on from earlier batches) the index
and seed of the caller's task rather than the job's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cheerful.levels import set_levels
from cheerful.task import current_task, enter_task

__all__ = ["PlannedTask"]


class PlannedTask:
    """``fn`` as a durable plan runs it (see the module docstring); picklable by value of
    ``fn`` (cloudpickle) and by reference to this class (cheerful is on every worker)."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        star: bool = False,
        inner: tuple[Any, ...] = (),
        seed: int | None = None,
        indices: Sequence[int] | None = None,
    ) -> None:
        self.fn, self.star, self.inner = fn, star, inner
        self.seed, self.indices = seed, indices
        self.__qualname__ = getattr(fn, "__qualname__", None) or type(fn).__qualname__

    @property
    def plain(self) -> bool:
        """True when this adds nothing: ``fn`` itself can be submitted."""
        return not self.star and not self.inner and self.indices is None

    def __call__(self, item: Any) -> Any:
        if self.indices is not None:
            ctx = current_task()
            if ctx is not None:  # the caller's index and seed, not the job's
                ctx.seed = self.seed
                enter_task(ctx, self.indices[ctx.index])
        saved = set_levels(self.inner) if self.inner else None
        try:
            return self.fn(*item) if self.star else self.fn(item)
        finally:
            if self.inner:
                set_levels(saved)
