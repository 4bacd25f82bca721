"""The task model shared by driven plans and durable jobs: chunks, outcomes, seeds.

No I/O lives here. A *chunk* is a run of consecutive tasks (``start`` .. ``start+len``)
that one worker executes in one go; an *outcome* is what one task produced: a value, or
an error envelope that can travel between processes even when the exception cannot.
"""

from __future__ import annotations

import contextvars
import os
import random
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .errors import ConfigError
from .record import Record

__all__ = [
    "Chunk",
    "ChunkResult",
    "ErrorInfo",
    "Failure",
    "Outcome",
    "TaskContext",
    "current_task",
    "python_seed",
    "task_progress",
    "task_rng",
]


class Chunk(Record):
    """Tasks ``start, start+1, ...`` (or the ``explicit`` indices) with inputs ``items``.

    ``star`` says each item is an argument tuple (``starmap``) rather than one argument.
    """

    FIELDS = ("start", "items", "star", "explicit")
    start: int
    items: Sequence[Any]
    star: bool
    explicit: tuple[int, ...] | None  # task indices, when not consecutive

    def __init__(
        self,
        start: int,
        items: Sequence[Any],
        star: bool = False,
        explicit: tuple[int, ...] | None = None,
    ) -> None:
        self._set(start=start, items=items, star=star, explicit=explicit)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def indices(self) -> Sequence[int]:
        """The task index of each item, in order."""
        if self.explicit is not None:
            return self.explicit
        return range(self.start, self.start + len(self.items))


class ErrorInfo(Record):
    """A task's exception in a form that always crosses a process boundary.

    ``exc_bytes`` is the pickled exception (empty when it could not be pickled);
    ``type_name``, ``message`` and ``traceback`` are plain text and always present;
    ``crash`` holds a crashed worker's ``exitcode`` and ``signal``.
    """

    FIELDS = ("type_name", "message", "traceback", "exc_bytes", "crash")
    type_name: str
    message: str
    traceback: str
    exc_bytes: bytes
    crash: dict[str, Any]

    def __init__(
        self,
        type_name: str,
        message: str,
        traceback: str,
        exc_bytes: bytes = b"",
        crash: dict[str, Any] | None = None,
    ) -> None:
        self._set(
            type_name=type_name,
            message=message,
            traceback=traceback,
            exc_bytes=exc_bytes,
            crash={} if crash is None else crash,
        )

    @classmethod
    def from_exception(cls, exc: BaseException, dumps: Callable[[Any], bytes]) -> ErrorInfo:
        """Capture ``exc`` (with its traceback) and try to pickle it with ``dumps``.

        cheerful's own outermost frames are left out of the traceback text.
        """
        import traceback  # loaded when a task first fails, not on the way to a first map

        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None and _is_ours(tb):
            tb = tb.tb_next  # the user's code starts below cheerful's call shims
        text = "".join(traceback.format_exception(type(exc), exc, tb))
        try:
            exc_bytes = dumps(exc)
        except Exception:  # the exception itself cannot travel: keep its text
            exc_bytes = b""
        return cls(_qualname(type(exc)), _safe_str(exc), text, exc_bytes)


class Outcome(Record):
    """What one task produced: ``value`` when ``ok``, else ``error``."""

    FIELDS = ("index", "ok", "value", "error")
    index: int
    ok: bool
    value: Any
    error: ErrorInfo | None

    def __init__(
        self, index: int, ok: bool, value: Any = None, error: ErrorInfo | None = None
    ) -> None:
        self._set(index=index, ok=ok, value=value, error=error)


class ChunkResult(Record):
    """What a chunk produced, compactly: ``values`` in task order (None where a task
    failed) and the failures' ``errors`` keyed by task index.

    One plain list travels back per chunk, not one object per task, so trivial tasks
    cost a few hundred nanoseconds each on the wire. ``seconds`` is the chunk's run time;
    ``unloadable``: the worker could not unpickle the chunk, no task ran; ``outputs``:
    task index -> its TaskOutput (:mod:`cheerful.taskio`); ``unseeded``: run without a
    seed, its tasks drew random numbers.
    """

    FIELDS = ("indices", "values", "errors", "seconds", "unloadable", "outputs", "unseeded")
    indices: Sequence[int]
    values: list[Any]
    errors: dict[int, ErrorInfo]
    seconds: float
    unloadable: bool
    outputs: dict[int, Any] | None
    unseeded: bool

    def __init__(
        self,
        indices: Sequence[int],
        values: list[Any],
        errors: dict[int, ErrorInfo] | None = None,
        seconds: float = 0.0,
        unloadable: bool = False,
        outputs: dict[int, Any] | None = None,
        unseeded: bool = False,
        **more: Any,
    ) -> None:
        self._set(
            indices=indices,
            values=values,
            errors={} if errors is None else errors,
            seconds=seconds,
            unloadable=unloadable,
            outputs=outputs,
            unseeded=unseeded,
            **more,  # a subclass's own fields
        )

    def __len__(self) -> int:
        return len(self.values)

    def outcomes(self) -> Iterator[Outcome]:
        """One :class:`Outcome` per task, in order."""
        errors = self.errors
        for index, value in zip(self.indices, self.values, strict=True):
            error = errors.get(index) if errors else None
            yield Outcome(index, error is None, value, error)


class Failure(Record):
    """A failed task's slot in results gathered with ``errors="return"``: its
    ``exception``, the remote ``traceback`` text, its ``index``, and ``output``, what the
    task printed, warned and logged before it failed (a :class:`cheerful.taskio.TaskOutput`;
    ``output.text()`` is its printed text), or None."""

    FIELDS = ("exception", "traceback", "index", "output")
    exception: BaseException
    traceback: str
    index: int
    output: Any

    def __init__(
        self, exception: BaseException, traceback: str, index: int, output: Any = None
    ) -> None:
        self._set(exception=exception, traceback=traceback, index=index, output=output)

    def __repr__(self) -> str:
        return f"Failure(index={self.index}, exception={self.exception!r})"


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _is_ours(tb) -> bool:
    return tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR)


def _qualname(tp: type) -> str:
    module = tp.__module__
    return tp.__qualname__ if module == "builtins" else f"{module}.{tp.__qualname__}"


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"


def as_items(items: Iterable[Any]) -> list[Any]:
    """The inputs of a map or a job as a list, or :class:`ConfigError` saying what's wrong."""
    if isinstance(items, (str, bytes)):
        raise ConfigError("items is a string: pass a list of inputs (e.g. list(text))")
    try:
        return items if isinstance(items, list) else list(items)
    except TypeError as exc:
        raise ConfigError(f"items must be iterable, not {type(items).__name__}") from exc


# --- seeds ----------------------------------------------------------------------------


def python_seed(seed: int, index: int) -> int:
    """A 256-bit seed for ``random`` derived from ``(seed, index)`` without numpy."""
    import hashlib

    digest = hashlib.sha256(f"cheerful:{int(seed)}:{int(index)}".encode()).digest()
    return int.from_bytes(digest, "big")


def _seed_sequence(seed: int, index: int):
    import numpy as np

    # Equivalent to np.random.SeedSequence(seed).spawn(n)[index], for any n.
    return np.random.SeedSequence(int(seed), spawn_key=(int(index),))


_NUMPY_MISSING = False


def _numpy():
    """numpy, imported (seeding it needs it loaded), or None when it is not installed."""
    global _NUMPY_MISSING
    if _NUMPY_MISSING:
        return None
    try:
        import numpy
    except ImportError:
        _NUMPY_MISSING = True
        return None
    return numpy


# --- the current task -------------------------------------------------------------------


class TaskContext:
    """What a running task can ask about itself: its index and seed (and so its rng);
    ``drew_unseeded``: a task asked for task_rng() with no seed to derive it from;
    ``on_progress``: where task_progress reports."""

    def __init__(
        self,
        index: int,
        seed: int | None = None,
        on_progress: Callable[[float], Any] | None = None,
    ) -> None:
        self.index = index
        self.seed = seed
        self._rng: Any = None
        self.drew_unseeded = False
        self.on_progress = on_progress

    def rng(self) -> Any:
        """This task's own ``numpy.random.Generator`` (independent stream per task)."""
        if self._rng is None:
            import numpy as np

            if self.seed is None:
                self.drew_unseeded = True
                self._rng = np.random.default_rng()
            else:
                self._rng = np.random.default_rng(_seed_sequence(self.seed, self.index))
        return self._rng


_current: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "cheerful_task", default=None
)


def current_task() -> TaskContext | None:
    """The context of the task running in this thread, or None outside a task."""
    return _current.get()


def task_rng() -> Any:
    """The current task's ``numpy.random.Generator``.

    With ``seed=S`` its stream depends only on ``(S, task index)``, so results do not
    change with the plan, the number of workers or the chunk size. Outside a task it
    returns a fresh unseeded generator.
    """
    ctx = _current.get()
    if ctx is None:
        import numpy as np

        return np.random.default_rng()
    return ctx.rng()


def task_progress(done: float, total: float = 1.0) -> None:
    """Say how far the running task is: ``done`` of ``total`` (``cf.task_progress(3, 10)``).

    The caller's progress bar or callback (``progress=``) moves by that share of one
    task, live, as progressr's ``p()`` does in R; a ``cf.map`` inside a task reports its
    own progress this way to the level above, so nested maps move one bar. Outside a task,
    or on a plan that cannot report live (Dask, durable jobs), it does nothing.
    """
    if not total or total < 0:
        raise ConfigError(f"task_progress needs a positive total, not {total!r}")
    ctx = _current.get()
    if ctx is None or ctx.on_progress is None:
        return
    ctx.on_progress(min(1.0, max(0.0, done / total)))


@contextmanager
def task_scope(
    seed: int | None,
    *,
    restore_rng: bool = False,
    on_progress: Callable[[float], Any] | None = None,
    context: TaskContext | None = None,
) -> Iterator[TaskContext]:
    """Make a context current for a run of tasks; :func:`enter_task` moves it along.

    ``restore_rng`` puts the global random states back afterwards (the sequential plan
    runs tasks in the caller's process and must not disturb its random state).
    ``context`` is the context to use (a subclass of the runner's), else a new one.
    """
    saved = _save_rng_states() if (restore_rng and seed is not None) else None
    ctx = context if context is not None else TaskContext(-1, seed, on_progress=on_progress)
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)
        if saved is not None:
            _restore_rng_states(saved)


def enter_task(ctx: TaskContext, index: int) -> None:
    """Task ``index`` starts now: point the context at it and seed its streams."""
    ctx.index = index
    ctx._rng = None
    if ctx.seed is not None:
        _seed_globals(ctx.seed, index)


def _seed_globals(seed: int, index: int) -> None:
    random.seed(python_seed(seed, index))
    np = _numpy()
    if np is not None:
        np.random.seed(_seed_sequence(seed, index).generate_state(8))


def _save_rng_states():
    np = _numpy()
    return random.getstate(), (np.random.get_state() if np is not None else None)


def _restore_rng_states(saved) -> None:
    py_state, np_state = saved
    random.setstate(py_state)
    if np_state is not None:
        sys.modules["numpy"].random.set_state(np_state)
