"""What a task's function weighs with the data it drags along, and what to do when it is heavy.

A function is pickled once per map (per executor, per durable job) to be shipped; what it
captures travels with it: closure variables, the module globals of a function pickled by
value (one defined in a script, a notebook, a test), defaults, a bound method's ``self``,
a ``functools.partial``'s arguments. Every worker gets a copy. :func:`guard` looks at the
size of those bytes (``len``, nothing more, for a small function) and

- over :data:`LARGE_FUNCTION_BYTES` warns with :class:`LargeFunctionWarning`;
- over the limit (:data:`GLOBALS_MAX_ENV`, default :data:`DEFAULT_GLOBALS_MAX`) refuses with
  :class:`~cheerful.errors.FunctionTooLarge` before anything runs.

Only then does it look inside the function to name the biggest captured objects, with
their sizes and where the function was defined (as R's ``future.globals.maxSize`` does).
"""

from __future__ import annotations

import functools
import math
import os
import re
import sys
import types
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from .errors import ConfigError, FunctionTooLarge

__all__ = [
    "DEFAULT_GLOBALS_MAX",
    "GLOBALS_MAX_ENV",
    "LARGE_FUNCTION_BYTES",
    "LargeFunctionWarning",
    "globals_max",
    "guard",
    "parse_size",
]

LARGE_FUNCTION_BYTES = 10_000_000
"""A pickled function above this (10 MB) is worth a warning: every worker gets a copy."""
DEFAULT_GLOBALS_MAX = 1_000_000_000
"""The largest pickled function cheerful ships unless told otherwise (1 GB). Each worker
process holds a copy besides the caller's pickle and its unpickled original: at 1 GB,
8 workers already hold 8 GB more than a loop would, and an SSH host gets 1 GB per map over
its link. Data that size belongs in a file the tasks read, not in a closure; a function
that must carry more can, with ``CHEERFUL_GLOBALS_MAX`` raised."""
GLOBALS_MAX_ENV = "CHEERFUL_GLOBALS_MAX"
"""The environment variable that sets the limit: bytes, or with a unit (``500MB``, ``2GB``,
``1.5GiB``), or ``off`` for none. Read at each map, so setting ``os.environ`` works too."""
SHOWN = 5
"""Captured objects named in a warning or an error, biggest first."""

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_NO_LIMIT = ("off", "none", "inf", "unlimited", "no")
_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)")
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class LargeFunctionWarning(UserWarning):
    """A task's function, pickled with what it captures, is large (over 10 MB): every worker
    gets a copy. The message names the biggest captured objects and says what to do;
    ``size`` is in bytes, ``biggest`` lists ``(name, bytes, kind)``. Silence it with
    ``warnings.filterwarnings("ignore", category=cf.LargeFunctionWarning)``."""

    def __init__(self, message: str = "", *, size: int = 0, biggest: list | None = None) -> None:
        super().__init__(message)
        self.size, self.biggest = size, biggest or []


Sizer = Callable[[Any], "tuple[int, BaseException | None]"]


def parse_size(value: Any, source: str = GLOBALS_MAX_ENV) -> float:
    """Bytes from ``value``: a number, or text such as ``"500MB"``, ``"2 GB"``, ``"1.5GiB"``
    (k/M/G/T are powers of 1000, KiB/MiB/GiB/TiB of 1024); ``"off"`` is no limit (inf)."""
    if isinstance(value, bool):
        raise ConfigError(f"{source} must be a size such as 500MB or 2GB, not {value!r}")
    if isinstance(value, (int, float)):
        size = float(value)
    elif isinstance(value, str):
        size = _parse_text(value, source)
    else:
        raise ConfigError(f"{source} must be a size such as 500MB or 2GB, not {value!r}")
    if math.isnan(size) or size <= 0:
        raise ConfigError(
            f"{source} must be a positive size such as 500MB or 2GB (or 'off' for no limit), "
            f"not {value!r}"
        )
    return size


@functools.lru_cache(maxsize=16)
def _parse_text(text: str, source: str) -> float:
    plain = text.strip().lower().replace("_", "")
    if plain in _NO_LIMIT:
        return math.inf
    match = _SIZE.fullmatch(plain)
    if match is None or match.group(2) not in _UNITS:
        raise ConfigError(
            f"{source}={text!r} is not a size: give bytes, or a number with a unit "
            "(500MB, 2GB, 1.5GiB), or 'off' for no limit"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


def globals_max(max_bytes: Any = None) -> float:
    """The limit in force: ``max_bytes`` when given, else :data:`GLOBALS_MAX_ENV`, else
    :data:`DEFAULT_GLOBALS_MAX` (inf: no limit)."""
    if max_bytes is not None:
        return parse_size(max_bytes, "globals_max")
    text = os.environ.get(GLOBALS_MAX_ENV)
    if not text:
        return DEFAULT_GLOBALS_MAX
    return parse_size(text)


def guard(
    fn: Any, size: int, sizer: Sizer, *, limit: float | None = None, warned_at: int = 0
) -> None:
    """Warn when ``fn``, pickled to ``size`` bytes, is large; refuse it past ``limit``
    (default: :func:`globals_max`).

    ``sizer`` measures one captured object (its pickled size, or the error pickling it
    raised); it runs only when ``fn`` is large. ``warned_at``: the size ``fn`` was found to
    have before (pickled again another way, e.g. with the caller's modules by value for an
    SSH host): no second warning when that was already large.
    """
    if limit is None:
        limit = globals_max()
    if size <= limit and (size <= LARGE_FUNCTION_BYTES or warned_at > LARGE_FUNCTION_BYTES):
        return
    biggest = _biggest(fn, sizer)
    where = describe_function(fn)
    parts = _listing(biggest)
    advice = (
        "Pass each task only the part it needs, as its input, or read the data inside the "
        "task from a file (a path is a few bytes; functools.cache keeps it loaded once per "
        "worker)"
    )
    if size > limit:
        raise FunctionTooLarge(
            f"the function {where} pickles to {format_size(size)} with what it captures, over "
            f"the limit of {format_size(limit)} ({GLOBALS_MAX_ENV}); nothing was run. "
            f"{parts}. {advice}; or raise the limit: {GLOBALS_MAX_ENV}={_raised(size)} "
            f"(or 'off').",
            size=size,
            limit=limit,
            biggest=biggest,
        )
    warning = LargeFunctionWarning(
        f"the function {where} pickles to {format_size(size)} with what it captures, and "
        f"every worker process gets a copy, sent once per map. {parts}. {advice}. Past "
        f"{format_size(limit)} it is refused ({GLOBALS_MAX_ENV}).",
        size=size,
        biggest=biggest,
    )
    warnings.warn(warning, stacklevel=_caller_level())


def _raised(size: int) -> str:
    """A limit above ``size``, written as the user would: 2GB, 300MB."""
    for unit, factor in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= factor:
            return f"{math.ceil(size * 1.5 / factor)}{unit}"
    return f"{math.ceil(size * 1.5)}"


def _caller_level() -> int:
    """The ``stacklevel`` of the first frame outside cheerful (the user's map call)."""
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level


def format_size(size: float) -> str:
    """``size`` bytes for people: 950 B, 12.3 MB, 2.1 GB (powers of 1000)."""
    if math.isinf(size):
        return "no limit"
    for unit, factor in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{int(size)} B"


def _listing(biggest: list[tuple[str, int, str]]) -> str:
    if not biggest:
        return "Nothing it captures could be named (cloudpickle pickles it as a whole)"
    shown = ", ".join(f"{label} {format_size(size)} ({kind})" for label, size, kind in biggest)
    return f"Biggest captured: {shown}"


# --- naming what a function drags along (slow path only) --------------------------------


def _biggest(fn: Any, sizer: Sizer) -> list[tuple[str, int, str]]:
    """The captured objects of ``fn`` that weigh most: (label, pickled size, kind)."""
    measured: list[tuple[str, int, str]] = []
    seen: set[int] = set()
    for label, obj in _captured(fn, "", 0, set()):
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        size, error = sizer(obj)
        if error is None and size > 0:
            measured.append((label, size, _kind(obj)))
    measured.sort(key=lambda part: -part[1])
    floor = max(1000, measured[0][1] // 1000) if measured else 0
    return [part for part in measured[:SHOWN] if part[1] >= floor] or measured[:1]


_MAX_DEPTH = 3
_OPAQUE = (type, types.BuiltinFunctionType, types.ModuleType)
"""Callables measured whole, never looked into: classes, builtins, modules."""


def _captured(obj: Any, prefix: str, depth: int, walked: set[int]) -> Iterator[tuple[str, Any]]:
    """(label, object) for what pickling ``obj`` (a callable) carries along."""
    if depth > _MAX_DEPTH or id(obj) in walked:
        return
    walked.add(id(obj))
    if isinstance(obj, functools.partial):
        yield from _inner(obj.func, prefix, "", depth, walked)
        for position, arg in enumerate(obj.args):
            yield f"{prefix}partial argument {position}", arg
        for name, arg in (obj.keywords or {}).items():
            yield f"{prefix}partial keyword {name!r}", arg
    elif isinstance(obj, types.MethodType):
        yield from _attributes(obj.__self__, f"{prefix}self", depth, walked)
        yield from _inner(obj.__func__, prefix, "", depth, walked)
    elif isinstance(obj, types.FunctionType):
        yield from _function_parts(obj, prefix, depth, walked)
    elif _wrapper(obj):  # a durable plan's task, an executor's caller: name their fields
        for name, value in vars(obj).items():
            yield from _inner(value, prefix, "" if callable(value) else name, depth, walked)
    elif not isinstance(obj, _OPAQUE):
        yield from _attributes(obj, prefix + type(obj).__name__, depth, walked)


def _function_parts(fn: types.FunctionType, prefix: str, depth: int, walked: set[int]):
    if _by_reference(fn):  # only its module and name travel
        return
    code = fn.__code__
    for name, cell in zip(code.co_freevars, fn.__closure__ or (), strict=False):
        try:
            value = cell.cell_contents
        except ValueError:  # not assigned yet
            continue
        yield from _inner(value, prefix, f"closure variable {name!r}", depth, walked)
    globs = fn.__globals__
    for name in sorted(_global_names(code)):
        if name in globs and not isinstance(globs[name], types.ModuleType):
            yield from _inner(globs[name], prefix, f"global {name!r}", depth, walked)
    defaults = fn.__defaults__ or ()
    positional = code.co_varnames[: code.co_argcount]
    for name, value in zip(positional[len(positional) - len(defaults) :], defaults, strict=True):
        yield f"{prefix}default of {name!r}", value
    for name, value in (fn.__kwdefaults__ or {}).items():
        yield f"{prefix}default of {name!r}", value
    for name, value in vars(fn).items():
        yield f"{prefix}attribute {name!r}", value


def _inner(value: Any, prefix: str, label: str, depth: int, walked: set[int]):
    """``value`` as one captured object, or, for a function that travels by value, what
    it captures in turn (labelled ``label -> ...``)."""
    unnamed_callable = not label and callable(value) and not isinstance(value, _OPAQUE)
    if isinstance(value, (types.FunctionType, functools.partial, types.MethodType)) or (
        unnamed_callable
    ):
        deeper = f"{prefix}{label} -> " if label else prefix
        yield from _captured(value, deeper, depth + 1, walked)
    elif label:
        yield f"{prefix}{label}", value


def _attributes(obj: Any, label: str, depth: int, walked: set[int]):
    """An object's attributes one by one (``self.model``), or the object as a whole."""
    state = getattr(obj, "__dict__", None)
    if not isinstance(state, dict) or isinstance(obj, (type, types.ModuleType)):
        yield label, obj
        return
    for name, value in state.items():
        yield from _inner(value, "", f"{label}.{name}", depth, walked)


def _global_names(code: types.CodeType) -> set[str]:
    """The global names ``code`` and the code nested in it may use (as cloudpickle)."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _by_reference(fn: types.FunctionType) -> bool:
    """True when cloudpickle sends ``fn`` by module and name (nothing it uses travels)."""
    try:
        from cloudpickle import cloudpickle as internals

        return bool(internals._should_pickle_by_reference(fn))
    except Exception:  # another cloudpickle: count everything
        return False


def _kind(obj: Any) -> str:
    """A short description of a captured object: ``ndarray float64 (25000000,)``."""
    kind = type(obj).__name__
    shape, dtype = getattr(obj, "shape", None), getattr(obj, "dtype", None)
    if isinstance(shape, tuple) and dtype is not None:
        return f"{kind} {dtype} {shape}"
    if isinstance(shape, tuple):
        return f"{kind} {'x'.join(map(str, shape))}"
    try:
        return f"{kind} of {len(obj)}"
    except Exception:
        return kind


def describe_function(fn: Any) -> str:
    """``name (module:line)`` of the code ``fn`` runs: a partial's or bound method's
    function, a callable object's ``__call__``, the user's function in cheerful's wrappers."""
    target = _unwrap(fn)
    if isinstance(target, types.FunctionType):
        name, module, code = target.__qualname__, target.__module__, target.__code__
    elif isinstance(getattr(target, "__name__", None), str) and not isinstance(target, type):
        name = target.__name__  # a builtin, a ufunc
        module, code = getattr(target, "__module__", None) or type(target).__module__, None
    else:
        kind = target if isinstance(target, type) else type(target)
        name, module = kind.__qualname__, kind.__module__
        call = next((vars(k)["__call__"] for k in kind.__mro__ if "__call__" in vars(k)), None)
        code = getattr(call, "__code__", None)
    if code is None:
        return f"{name} ({module})"
    place = code.co_filename if module in (None, "__main__") else module
    return f"{name} ({place}:{code.co_firstlineno})"


def _wrapper(obj: Any) -> bool:
    """True for the callables cheerful wraps a user's function in."""
    return type(obj).__module__.startswith("cheerful.") and isinstance(
        getattr(obj, "__dict__", None), dict
    )


def _unwrap(fn: Any) -> Any:
    """The function a partial, a bound method or one of cheerful's wrappers (a durable
    plan's task, an executor's caller) runs."""
    for _ in range(8):
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif isinstance(fn, types.MethodType):
            fn = fn.__func__
        elif _wrapper(fn):
            inner = next((v for v in vars(fn).values() if callable(v)), None)
            if inner is None:
                return fn
            fn = inner
        else:
            return fn
    return fn
