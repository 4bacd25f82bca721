"""What a task says besides its result: its prints, warnings and log records.

In a worker process a :class:`Catcher` is installed once: ``sys.stdout`` and ``sys.stderr``
become streams that keep what each task writes, ``warnings.showwarning`` keeps each
warning, and a handler on the root logger keeps each log record (in place of the handlers
the worker inherited, which would print it a second time). Per task the catcher gives a
:class:`TaskOutput`, which travels back with the chunk's result; the caller replays it with
:func:`replay`: the text to its own ``sys.stdout``/``sys.stderr``, each warning re-issued
with its category (so ``warnings.catch_warnings``, ``-W error`` and pytest's filters work as
in a loop), each log record handed to the caller's logger of that name. As R's future does,
a task's output comes out whole, with its result, in task order (``cf.map``), never two
tasks mixed mid-line.

What a native library writes to file descriptor 1 or 2 itself (not through Python's
streams) is not caught and still goes out live. A task's output is capped at
:data:`OUTPUT_CAP` characters; what is cut is said. ``output="live"`` (or
``CHEERFUL_OUTPUT=live``) turns catching off.
"""

from __future__ import annotations

import io
import os
import sys
import warnings
from typing import TYPE_CHECKING, Any

from .record import Record

if TYPE_CHECKING:
    import logging

__all__ = ["OUTPUT_CAP", "Catcher", "TaskOutput", "live_default", "log_handler", "replay"]

OUTPUT_CAP = 1_000_000
"""Characters of output (prints and log messages) kept per task; the rest is cut, and said."""

OUT, ERR, WARN, LOG = "out", "err", "warn", "log"


class TaskOutput(Record):
    """One task's prints, warnings and log records, in the order they happened.

    ``events`` holds ``("out", text)``, ``("err", text)``, ``("warn", category, message,
    filename, lineno)`` and ``("log", record_fields)``; ``cut`` is how many characters past
    :data:`OUTPUT_CAP` were dropped; ``shown``: the text went out live as it was written
    (the sequential plan)."""

    FIELDS = ("events", "cut", "shown")
    events: tuple[tuple, ...]
    cut: int
    shown: bool

    def __init__(self, events: tuple[tuple, ...], cut: int = 0, shown: bool = False) -> None:
        self._set(events=events, cut=cut, shown=shown)

    def text(self) -> str:
        """The printed text, stdout and stderr as they came, with a note of any cut."""
        parts = [e[1] for e in self.events if e[0] in (OUT, ERR)]
        if self.cut:
            parts.append(_cut_note(self.cut))
        return "".join(parts)

    def __bool__(self) -> bool:
        return bool(self.events) or bool(self.cut)


def live_default() -> bool:
    """True when ``CHEERFUL_OUTPUT=live`` asks for the old behaviour (tasks print live)."""
    return os.environ.get("CHEERFUL_OUTPUT", "").strip().lower() == "live"


class Catcher:
    """The per-process catcher of a worker (see the module docstring). Between
    :meth:`begin` and :meth:`end` (a chunk) what each task says is kept under its index,
    :attr:`task` being the one running; outside, output passes through.

    Setting :attr:`task` is all a task start costs (tens of nanoseconds): events are
    filed when something is said, so tasks that say nothing cost nothing more. A chunk run
    in one go (see :func:`cheerful.runner.run_chunk`) sets no :attr:`task` at all: it sets
    :attr:`locate`, which the first event calls to learn the running task.
    """

    def __init__(self, *, tee: bool = False) -> None:
        self.tee = tee  # keep what tasks print and let it go out live too
        self.task = -1  # the index of the task running now
        self.warned = -1  # the last task that issued a warning (-1: none in this chunk)
        self.said: dict[int, list[tuple]] | None = None  # None: not catching (goes live)
        self.locate: Any = None  # a callable that sets :attr:`task` (a chunk run in one go)
        self._logs = "off"  # the root log handlers: "off", "waiting" for logging, "caught"
        self.sizes: dict[int, int] = {}
        self.cuts: dict[int, int] = {}
        self.stdout, self.stderr = sys.stdout, sys.stderr  # the streams it stands in for

    def install(self, *, streams_only: bool = False) -> Catcher:
        """Stand in for this process's streams, warnings display and root log handlers
        (``streams_only``: for the streams alone, in the caller, until :meth:`uninstall`)."""
        sys.stdout = _Stream(self, OUT, self.stdout)
        sys.stderr = _Stream(self, ERR, self.stderr)
        if streams_only:
            return self
        warnings.showwarning = self._warning
        _forget_shown_warnings()  # those the caller had shown before this process forked
        self._logs = "waiting"
        self._catch_logs()
        return self

    def _catch_logs(self) -> None:
        """Stand in for the root log handlers, once ``logging`` is loaded (a process that
        never loads it does not pay for it; a task that loads it is caught from the next
        chunk on, and meanwhile its records go out as Python's last-resort handler writes
        them: to stderr, which is caught)."""
        if self._logs != "waiting" or "logging" not in sys.modules:
            return
        import logging

        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        root.addHandler(log_handler(self))
        self._logs = "caught"

    def uninstall(self) -> None:
        """Give back the streams :meth:`install` stood in for (``streams_only`` use)."""
        self.said = None
        if isinstance(sys.stdout, _Stream) and sys.stdout.catcher is self:
            sys.stdout = self.stdout
        if isinstance(sys.stderr, _Stream) and sys.stderr.catcher is self:
            sys.stderr = self.stderr

    def begin(self) -> None:
        """A chunk starts: keep what its tasks say."""
        self.said, self.sizes, self.cuts, self.task, self.warned = {}, {}, {}, -1, -1
        if self._logs == "waiting":
            self._catch_logs()

    def next_task(self, index: int) -> None:
        """Task ``index`` starts (a warning shown by the task before may show again)."""
        if self.warned >= 0:  # "once per location" holds per task, not per worker
            self.warned = -1
            _forget_shown_warnings()
        self.task = index

    def end(self) -> dict[int, TaskOutput]:
        """The chunk ended: what each task said (only those that said something)."""
        said, self.said = self.said or {}, None
        if self.warned >= 0:
            self.warned = -1
            _forget_shown_warnings()
        indices = set(said) | set(self.cuts)
        return {
            i: TaskOutput(tuple(_joined(said.get(i, []))), self.cuts.get(i, 0), self.tee)
            for i in indices
        }

    def _events(self) -> list[tuple]:
        events = self.said.get(self.task)  # type: ignore[union-attr]
        if events is None:
            events = self.said[self.task] = []  # type: ignore[index]
        return events

    def add(self, kind: str, text: str) -> bool:
        """Keep ``text`` written to stream ``kind``; False when not catching (write it)."""
        if self.said is None:
            return False
        if self.locate is not None:
            self.locate()
        size = self.sizes.get(self.task, 0)
        room = OUTPUT_CAP - size
        if len(text) > room:
            self.cuts[self.task] = self.cuts.get(self.task, 0) + len(text) - max(room, 0)
            text = text[: max(room, 0)]
        if text:
            self.sizes[self.task] = size + len(text)
            self._events().append((kind, text))
        return not self.tee

    def _warning(self, message, category, filename, lineno, file=None, line=None) -> None:
        if self.said is None:
            _show_warning(message, category, filename, lineno, file, line)
            return
        if self.locate is not None:
            self.locate()
        self.warned = self.task
        self._events().append((WARN, _category(category), str(message), filename, lineno))

    def keep_record(self, record: logging.LogRecord) -> bool:
        """Keep a log record (its message formatted here); False when not catching."""
        if self.said is None:
            return False
        if self.locate is not None:
            self.locate()
        fields = {
            "name": record.name,
            "msg": record.getMessage(),
            "levelno": record.levelno,
            "levelname": record.levelname,
            "pathname": record.pathname,
            "lineno": record.lineno,
            "funcName": record.funcName,
            "created": record.created,
            "exc_text": _exc_text(record),
            "stack_info": record.stack_info,
        }
        self.sizes[self.task] = self.sizes.get(self.task, 0) + len(fields["msg"])
        self._events().append((LOG, fields))
        return True


_show_warning = warnings.showwarning  # the display the catcher stands in for


class _Stream(io.TextIOBase):
    """``sys.stdout`` or ``sys.stderr`` of a worker: kept per task, else passed through."""

    def __init__(self, catcher: Catcher, kind: str, through: Any) -> None:
        self.catcher, self.kind, self.through = catcher, kind, through

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if not self.catcher.add(self.kind, text):
            self.through.write(text)
        return len(text)

    def flush(self) -> None:
        if self.catcher.said is None or self.catcher.tee:
            self.through.flush()

    def fileno(self) -> int:
        return self.through.fileno()

    def isatty(self) -> bool:
        return self.catcher.tee and self.through.isatty()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.through, "encoding", "utf-8")

    @property
    def buffer(self) -> Any:
        """Bytes written here go out live (a task that writes bytes is rare)."""
        return self.through.buffer


def log_handler(catcher: Catcher) -> logging.Handler:
    """A log handler that keeps records for ``catcher`` (a worker's root handler): kept per
    task, else printed as Python's last-resort handler would."""
    import logging

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if not catcher.keep_record(record):
                logging.lastResort.handle(record) if logging.lastResort else None

    return Handler(logging.NOTSET)


def _joined(events: list[tuple]) -> list[tuple]:
    """Consecutive writes to one stream as one event (a print is two writes)."""
    joined: list[tuple] = []
    for event in events:
        if joined and event[0] in (OUT, ERR) and joined[-1][0] == event[0]:
            joined[-1] = (event[0], joined[-1][1] + event[1])
        else:
            joined.append(event)
    return joined


def _category(category: type) -> Any:
    """A warning category as it travels: the class if it pickles (cloudpickle brings a
    class the caller shipped by value back as that very class), else its name."""
    import cloudpickle

    try:
        cloudpickle.dumps(category)
        return category
    except Exception:  # noqa: BLE001 - a class that cannot travel: its name is enough
        return f"{category.__module__}.{category.__qualname__}"


def _exc_text(record: logging.LogRecord) -> str | None:
    if record.exc_text:
        return record.exc_text
    if record.exc_info:
        import logging

        return logging.Formatter().formatException(record.exc_info)
    return None


def _forget_shown_warnings() -> None:
    """Let the next task show a warning already shown at the same place (the registries of
    "default" and "once" are dropped when the filters change)."""
    mutated = getattr(warnings, "_filters_mutated", None) or getattr(
        warnings, "_filters_mutated_lock_held", None
    )
    if mutated is not None:
        mutated()


def _cut_note(cut: int) -> str:
    return f"\n[cheerful: {cut} more characters of this task's output were cut]\n"


def replay(output: TaskOutput | None, index: int) -> None:
    """Say in this process what task ``index`` said (see the module docstring): a warning
    filtered into an error here raises, as the task's own call would in a loop."""
    if not output:
        return
    for event in output.events:
        kind = event[0]
        if kind == OUT and not output.shown:
            sys.stdout.write(event[1])
        elif kind == ERR and not output.shown:
            sys.stderr.write(event[1])
        elif kind == WARN:
            _, category, message, filename, lineno = event
            if not (isinstance(category, type) and issubclass(category, Warning)):
                message, category = f"{category}: {message}", UserWarning
            module = os.path.splitext(os.path.basename(filename or "<task>"))[0]
            warnings.warn_explicit(  # module=None would be dropped on the floor
                f"{message} (cheerful task {index})", category, filename, lineno, module
            )
        elif kind == LOG:
            import logging

            fields = dict(event[1], args=None, exc_info=None, cheerful_task=index)
            record = logging.makeLogRecord(fields)
            logger = logging.getLogger(record.name)
            if logger.isEnabledFor(record.levelno):
                logger.handle(record)
    if output.cut and not output.shown:
        sys.stderr.write(_cut_note(output.cut))
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
