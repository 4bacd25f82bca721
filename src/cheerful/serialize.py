"""cloudpickle in and out: functions, arguments, outcomes and exceptions.

Everything that crosses a process boundary goes through here. It pickles what cloudpickle
would send, with the C pickler where that gives the same (data, what is importable by
name, and a script's plain functions by value: :mod:`cheerful.plainvalue`), and with
cloudpickle only for the rest. Large binary buffers (numpy arrays and the like) travel out
of band with pickle protocol 5, so pickling them does not copy them; :func:`check_items`
uses that to validate every argument before any task runs without holding a second copy
of the inputs.

cloudpickle sends the code of a function it pickles by value (one defined in ``__main__``,
a script, a notebook) with its file name replaced by ``"<dynamic-code>"``. cheerful keeps
the real file name instead, so a task's traceback says ``File "/path/to/script.py", line 6``
(and shows the source line where that file exists on the worker).
"""

from __future__ import annotations

import io
import math
import pickle
import sys
import types
from collections import ChainMap
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .errors import SerializationError
from .globals_guard import globals_max, guard
from .task import ChunkResult, ErrorInfo

__all__ = [
    "check_function",
    "check_items",
    "dumps",
    "loads",
    "pack_result",
    "rebuild_exception",
    "size_of",
]

PROTOCOL = 5
_DYNAMIC_CODE = "<dynamic-code>"
"""The file name cloudpickle gives every code object it pickles by value."""


def _code_in_file(code: types.CodeType, filename: str) -> types.CodeType:
    """``code`` with its file name put back (called when unpickling)."""
    return code.replace(co_filename=filename)


class _PlainPickler(pickle.Pickler):
    """The C pickler, for what pickles the same with cloudpickle: data, functions and
    classes importable by module and name, modules by name, and plain functions that must
    travel by value (from ``__main__``, a lambda, one defined in a function), reduced as
    cloudpickle reduces them (:mod:`cheerful.plainvalue`). It refuses
    (:class:`~cheerful.plainvalue.NotPlain`) a class cloudpickle would send by value, or a
    function beyond that fast path; what it cannot pickle at all raises as usual. cloudpickle (with ``logging``, ``dataclasses``,
    ``inspect`` and ``platform`` behind it) then loads only when needed, which keeps it
    off the way to a first ``cf.map``."""

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is types.FunctionType:
            return NotImplemented if _importable(obj) else self._by_value(obj)
        if kind is types.MethodType:  # its function and object, not getattr(object, name)
            from .plainvalue import bound_method

            return bound_method, (obj.__func__, obj.__self__)
        if kind is types.CodeType:  # a closure factory's functions share one code object
            from .plainvalue import reduce_code

            return reduce_code(obj)
        if kind is types.ModuleType:
            from .plainvalue import reduce_module

            return reduce_module(obj)
        if (kind is TypeVar and not _importable(obj, obj.__name__)) or (
            isinstance(obj, type) and obj not in _PICKLED_BY_PICKLE and not _importable(obj)
        ):  # cloudpickle sends it by value (plain pickle would name what is not there)
            from .plainvalue import NotPlain

            raise NotPlain("a class or TypeVar that cloudpickle sends by value")
        return NotImplemented

    def _by_value(self, fn: types.FunctionType) -> Any:
        from .plainvalue import reduce_function

        if not hasattr(self, "shared_globals"):
            self.shared_globals: dict[int, dict] = {}
        return reduce_function(fn, self.shared_globals)


_PICKLED_BY_PICKLE = (type(None), type(NotImplemented), type(...))  # pickle knows these


def _importable(obj: Any, name: str | None = None) -> bool:
    """True when ``obj`` is found again by its module and qualified name (or ``name``), as
    cloudpickle decides to pickle it by reference."""
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str) or module == "__main__":
        return False
    found = sys.modules.get(module)
    for part in (name or getattr(obj, "__qualname__", "<none>")).split("."):
        found = getattr(found, part, None)
    return found is obj


def _by_value_modules() -> bool:
    """True while modules are registered with cloudpickle to travel by value (an SSH
    host's chunk is being pickled, see :mod:`cheerful.byvalue`)."""
    internals = sys.modules.get("cloudpickle.cloudpickle")
    return bool(getattr(internals, "_PICKLE_BY_VALUE_MODULES", None))


_cloud: list[type] = []  # the cloudpickle pickler below, made once it is first needed


def _cloud_pickler() -> type:
    """cloudpickle's pickler, but code pickled by value keeps its file name."""
    if _cloud:
        return _cloud[0]
    import cloudpickle

    table = cloudpickle.CloudPickler.dispatch_table
    reduce_code = table[types.CodeType]

    def _reduce_code(code: types.CodeType) -> tuple[Any, ...]:
        filename = code.co_filename
        if filename == _DYNAMIC_CODE or not isinstance(filename, str):
            return reduce_code(code)
        # The copy is reduced by cloudpickle (it takes the branch above); nested code
        # objects (inner functions, comprehensions) come back here and keep their names.
        return _code_in_file, (code.replace(co_filename=_DYNAMIC_CODE), filename)

    class CloudPickler(cloudpickle.CloudPickler):
        dispatch_table = ChainMap(
            {types.CodeType: _reduce_code}, *getattr(table, "maps", [table])
        )

    _cloud.append(CloudPickler)
    return CloudPickler


def _dump(obj: Any, new_file: Callable[[], Any], buffers: list | None = None) -> Any:
    """Pickle ``obj`` into a file from ``new_file()`` and return that file: plainly when
    that gives what cloudpickle would, else (a second file) with cloudpickle.
    ``buffers`` collects the out-of-band buffers (None: in band)."""
    callback = buffers.append if buffers is not None else None
    if not _by_value_modules():
        file = new_file()
        try:
            _PlainPickler(file, protocol=PROTOCOL, buffer_callback=callback).dump(obj)
            return file
        except (KeyboardInterrupt, _OverLimit):
            raise
        except BaseException:  # noqa: BLE001 - cloudpickle may do it, or says why not
            if buffers is not None:
                buffers.clear()
    file = new_file()
    _cloud_pickler()(file, protocol=PROTOCOL, buffer_callback=callback).dump(obj)
    return file


def dumps(obj: Any) -> bytes:
    """Pickle ``obj`` as cloudpickle does (functions and closures by value where needed)."""
    with _dump(obj, io.BytesIO) as file:
        return file.getvalue()


def loads(data: bytes | bytearray | memoryview) -> Any:
    """Unpickle bytes made by :func:`dumps` (plain pickle can read cloudpickle output)."""
    return pickle.loads(data)


def dumps_oob(obj: Any) -> tuple[bytes, list[pickle.PickleBuffer]]:
    """Pickle ``obj`` keeping large buffers out of band (no copy of array data)."""
    buffers: list[pickle.PickleBuffer] = []
    with _dump(obj, io.BytesIO, buffers) as file:
        return file.getvalue(), buffers


def loads_oob(data: bytes, buffers: Sequence[Any]) -> Any:
    """Unpickle what :func:`dumps_oob` produced, given its buffers."""
    return pickle.loads(data, buffers=buffers)


class _Sink(io.RawIOBase):
    """A file that counts what is written to it and keeps nothing."""

    def __init__(self) -> None:
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        n = len(data) if not isinstance(data, memoryview) else data.nbytes
        self.size += n
        return n


def _pickled_size(obj: Any) -> int:
    """Bytes ``obj`` takes when pickled, buffers included, without keeping a copy."""
    buffers: list[pickle.PickleBuffer] = []
    sink = _dump(obj, _Sink, buffers)
    return sink.size + sum(buf.raw().nbytes for buf in buffers)


def check_function(fn: Callable, *, max_bytes: Any = None) -> bytes:
    """Pickle ``fn`` or raise :class:`SerializationError` naming what cannot travel.

    The bytes are measured too (see :mod:`cheerful.globals_guard`): a large function warns
    (:class:`~cheerful.globals_guard.LargeFunctionWarning`), one over ``max_bytes`` (default:
    ``CHEERFUL_GLOBALS_MAX``, else 1 GB) raises :class:`~cheerful.errors.FunctionTooLarge`;
    pickling stops at the limit, so refusing a huge function does not hold a copy of it.
    """
    limit = globals_max(max_bytes)
    try:
        data = dumps(fn) if math.isinf(limit) else _dumps_capped(fn, limit)
    except _OverLimit:
        size, _ = _try_size(fn)  # its whole size, for the message; nothing is kept
        guard(fn, max(size, int(limit) + 1), _try_size, limit=limit)  # raises
        raise AssertionError("unreachable: the guard refuses what is over the limit") from None
    except Exception as exc:
        culprit = _function_culprit(fn)
        where = f" ({culprit})" if culprit else ""
        raise SerializationError(
            f"the function {_describe(fn)} cannot be serialized{where}: "
            f"{type(exc).__name__}: {exc}. Create such objects inside the function, or pass "
            "something picklable (a path, a config) instead."
        ) from exc
    guard(fn, len(data), _try_size, limit=limit)
    return data


class _OverLimit(Exception):
    """Pickling went past the limit (raised by :class:`_Capped`)."""


class _Capped(io.BytesIO):
    """A buffer that refuses the write that would take it past ``cap`` bytes."""

    def __init__(self, cap: float) -> None:
        super().__init__()
        self.cap = cap

    def write(self, data) -> int:
        with memoryview(data) as view:  # bytes, or a PickleBuffer (an array's data)
            size = view.nbytes
        if self.tell() + size > self.cap:
            raise _OverLimit
        return super().write(data)


def _dumps_capped(obj: Any, cap: float) -> bytes:
    with _dump(obj, lambda: _Capped(cap)) as file:
        return file.getvalue()


def _function_culprit(fn: Callable) -> str:
    """Name the closure variable or global of ``fn`` that cannot be pickled, if any."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return ""
    cells = zip(code.co_freevars, getattr(fn, "__closure__", None) or (), strict=False)
    for name, cell in cells:
        if not _picklable(_cell_value(cell)):
            return f"closure variable {name!r} = {_describe(_cell_value(cell))}"
    globs = getattr(fn, "__globals__", {})
    for name in code.co_names:
        if name in globs and not _picklable(globs[name]):
            return f"global {name!r} = {_describe(globs[name])}"
    return ""


def _cell_value(cell) -> Any:
    try:
        return cell.cell_contents
    except ValueError:
        return None


def _picklable(obj: Any) -> bool:
    return _pickling_error(obj) is None


def _pickling_error(obj: Any) -> BaseException | None:
    """What pickling ``obj`` raises (a ``__reduce__`` may even raise SystemExit), or None."""
    return _try_size(obj)[1]


def size_of(obj: Any) -> tuple[int, BaseException | None]:
    """The bytes ``obj`` pickles to (buffers included, nothing kept), or what pickling it
    raised: how :func:`~cheerful.globals_guard.guard` weighs what a function captures."""
    return _try_size(obj)


def _try_size(obj: Any) -> tuple[int, BaseException | None]:
    try:
        return _pickled_size(obj), None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - any failure means it cannot travel
        return 0, exc


def check_items(items: Sequence[Any], first_index: int = 0) -> int:
    """Validate that every item pickles; return the total pickled size in bytes.

    Raises :class:`SerializationError` naming the first bad task index (counted from
    ``first_index``) and its object. One pass over the whole list is tried first; only
    when it fails are the items pickled one by one to find the culprit.
    """
    if isinstance(items, range):  # a range travels as itself: nothing in it can fail
        return _pickled_size(items)
    size, first_error = _try_size(list(items) if not isinstance(items, list) else items)
    if first_error is None:
        return size
    for index, item in enumerate(items):
        if (exc := _pickling_error(item)) is not None:
            raise SerializationError(
                f"task {first_index + index}: its input {_describe(item)} cannot be serialized: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    raise SerializationError(f"the inputs cannot be serialized: {first_error}") from first_error


def _describe(obj: Any, limit: int = 120) -> str:
    try:
        text = repr(obj)
    except Exception:
        text = f"<{type(obj).__qualname__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def pack_result(result: ChunkResult) -> bytes:
    """Pickle a chunk's result; a value that cannot be pickled fails only its own task.

    Plain pickle is tried first (several times faster for lists of simple values);
    cloudpickle handles what it cannot (lambdas, classes defined inside a task).
    """
    for pickler in (_plain_dumps, dumps):
        try:
            return pickler(result)
        except KeyboardInterrupt:
            raise
        except BaseException:  # noqa: BLE001 - a value's __reduce__ may raise anything
            pass
    return dumps(_without_unpicklable(result))


def _plain_dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=PROTOCOL)


def _without_unpicklable(result: ChunkResult) -> ChunkResult:
    values, errors = list(result.values), dict(result.errors)
    for position, (index, value) in enumerate(zip(result.indices, values, strict=True)):
        if index in errors or (exc := _pickling_error(value)) is None:
            continue
        values[position] = None
        errors[index] = ErrorInfo.from_exception(_result_error(index, value, exc), dumps)
    for index, error in errors.items():
        if not _picklable(error):
            errors[index] = ErrorInfo(error.type_name, error.message, error.traceback)
    return result.replace(values=values, errors=errors)  # keeps subclasses


def _result_error(index: int, value: Any, exc: BaseException) -> BaseException:
    """The error of a task whose result cannot be pickled: a SerializationError naming
    it, or what pickling raised when that is no error at all (SystemExit)."""
    if not isinstance(exc, Exception):
        return exc
    err = SerializationError(
        f"task {index}: its result {_describe(value)} cannot be serialized: "
        f"{type(exc).__name__}: {exc}"
    )
    err.__cause__ = exc
    return err


class RemoteTraceback(Exception):
    """The traceback of an exception as it was raised in a worker (shown as ``__cause__``);
    ``tb`` is the text, as in ``concurrent.futures.process._RemoteTraceback``."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = self.tb = text

    def __str__(self) -> str:
        return self.text


def rebuild_exception(error: ErrorInfo, index: int) -> BaseException:
    """The task's own exception, with the remote traceback as its ``__cause__``.

    Falls back to :class:`cheerful.errors.TaskError` with the formatted text when the
    exception cannot be unpickled here.
    """
    from .errors import TaskError, WorkerCrashed

    if error.crash:
        return WorkerCrashed(error.message, index=index, **error.crash)
    exc = _unpickle_exception(error.exc_bytes)
    if exc is None:
        exc = TaskError(
            f"task {index} raised {error.type_name}: {error.message}",
            index=index,
            type_name=error.type_name,
            remote_traceback=error.traceback,
        )
    _add_note(exc, f"(raised by cheerful task {index})")
    exc.__cause__ = RemoteTraceback(f'\n"""\n{error.traceback}"""')
    return exc


def _unpickle_exception(data: bytes) -> BaseException | None:
    if not data:
        return None
    try:
        exc = loads(data)
    except Exception:
        return None
    return exc if isinstance(exc, BaseException) else None


def _add_note(exc: BaseException, note: str) -> None:
    try:
        if hasattr(exc, "add_note"):
            exc.add_note(note)
        else:  # Python 3.10: keep the note where 3.11+ tools look for it
            exc.__notes__ = [*getattr(exc, "__notes__", []), note]
    except Exception:  # exceptions with __slots__ or read-only attributes
        pass
