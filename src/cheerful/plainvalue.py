"""A script's functions by value with the C pickler: what cloudpickle sends, without it.

A function that cannot be found again by module and name (one defined in ``__main__``,
a lambda, one defined inside a function) travels by value: its code, the globals it
names, its closure, defaults and attributes. cloudpickle does that, but importing it (with
``dataclasses``, ``inspect``, ``logging`` and ``platform`` behind it) costs a cold
``cf.map`` of a script's function about 15 ms, which is most of its lead over
``multiprocessing.Pool``. So :class:`cheerful.serialize` hands such a plain function to
:func:`reduce_function` first, which reduces it as ``cloudpickle`` 3.x does
(``_dynamic_function_reduce``: the same globals, shared between functions of one pickle;
the same submodules imported on arrival; the same attributes set), with the code object
marshalled (it keeps its real file name, as cheerful wants; cloudpickle's has to be put
back). Everything it names goes through the same pickler: data plainly, importable
functions, classes and modules by name, other such functions by value again.

Whatever is outside that (a class defined in ``__main__``, an empty closure cell, a
global plain pickle refuses, Python 3.14's lazy annotations) raises :class:`NotPlain`,
and the whole object is pickled again by cloudpickle: this is a fast path, never a
second opinion.
"""

from __future__ import annotations

import builtins
import marshal
import opcode
import pickle
import sys
import types
import weakref
from typing import Any

__all__ = ["NotPlain", "bound_method", "reduce_code", "reduce_function", "reduce_module"]

_GLOBAL_OPS = frozenset(
    opcode.opmap[name] for name in ("LOAD_GLOBAL", "STORE_GLOBAL", "DELETE_GLOBAL")
)
_ATTRIBUTES = ("__name__", "__qualname__", "__annotations__", "__kwdefaults__",
               "__defaults__", "__module__", "__doc__")  # fmt: skip
_MODULE_KEYS = ("__package__", "__name__", "__path__", "__file__")  # relative imports
_code_globals: weakref.WeakKeyDictionary[types.CodeType, dict[str, None]] = (
    weakref.WeakKeyDictionary()  # a redefined function's old code is let go
)
_BYTECODE = sys.implementation.cache_tag or "no-cache-tag"  # e.g. "cpython-311"


class NotPlain(Exception):
    """This object needs cloudpickle (see the module docstring): raised here, and by
    :mod:`cheerful.serialize`'s C pickler for a class or TypeVar sent by value."""


def reduce_function(fn: types.FunctionType, shared_globals: dict[int, dict]) -> tuple:
    """The reduce tuple that rebuilds ``fn`` by value (its state set after it exists, so
    that functions naming each other come back naming each other). ``shared_globals`` is
    one per pickle: the functions of one module share one globals dict on arrival."""
    if sys.version_info >= (3, 14):
        raise NotPlain("annotations are lazy from Python 3.14: cloudpickle knows them")
    code = fn.__code__
    closure = fn.__closure__
    values = None
    if closure is not None:
        try:
            values = [cell.cell_contents for cell in closure]
        except ValueError:  # an empty cell (a name not yet bound): cloudpickle's case
            raise NotPlain("an empty closure cell") from None
    base = shared_globals.get(id(fn.__globals__))
    if base is None:
        base = {k: fn.__globals__[k] for k in _MODULE_KEYS if k in fn.__globals__}
        shared_globals[id(fn.__globals__)] = base
    named = {k: fn.__globals__[k] for k in _names_of(code) if k in fn.__globals__}
    slots = {name: getattr(fn, name) for name in _ATTRIBUTES}
    slots["__closure__"] = values
    slots["submodules"] = _submodules(code, [*named.values(), *(values or ())])
    slots["__globals__"] = named
    state = (dict(fn.__dict__), slots)
    nfree = None if closure is None else len(closure)
    return _make_function, (code, base, nfree), state, None, None, _set_function_state


def reduce_code(code: types.CodeType) -> tuple:
    """A code object, marshalled (pickled once however many functions share it), with the
    Python it was made for."""
    try:
        return _load_code, (marshal.dumps(code), _BYTECODE)
    except ValueError as exc:  # a hand-made code object with constants marshal refuses
        raise NotPlain(str(exc)) from exc


def bound_method(fn: Any, obj: Any) -> types.MethodType:
    """``fn`` bound to ``obj``: how a bound method travels (as cloudpickle sends it), so
    that it is the same function that comes back, whatever its name."""
    return types.MethodType(fn, obj)


def reduce_module(module: types.ModuleType) -> tuple:
    """A module by name, imported again on arrival, where ``sys.modules`` has it."""
    if sys.modules.get(module.__name__) is not module:
        raise NotPlain(f"module {module.__name__!r} is not importable by name")
    return _import_module, (module.__name__,)


def _names_of(code: types.CodeType) -> dict[str, None]:
    """The global names ``code`` (and the code nested in it) reads, writes or deletes."""
    names = _code_globals.get(code)
    if names is None:
        import dis  # here: a map that sends no function by value never needs it

        names = {i.argval: None for i in dis.get_instructions(code) if i.opcode in _GLOBAL_OPS}
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                names.update(_names_of(const))
        _code_globals[code] = names
    return names


def _submodules(code: types.CodeType, named: list[Any]) -> list[types.ModuleType]:
    """The loaded submodules of named packages that ``code`` reaches by attribute
    (``concurrent.futures`` when it names ``concurrent``): imported again on arrival."""
    found, reached = [], set(code.co_names)
    for value in named:
        if isinstance(value, types.ModuleType) and getattr(value, "__package__", None):
            prefix = value.__name__ + "."
            for name in list(sys.modules):  # a copy: another thread may import meanwhile
                if (
                    isinstance(name, str)
                    and name.startswith(prefix)
                    and not set(name[len(prefix) :].split(".")) - reached
                ):
                    found.append(sys.modules[name])
    return found


def _import_module(name: str) -> types.ModuleType:
    __import__(name)
    return sys.modules[name]


def _load_code(code_bytes: bytes, bytecode: str) -> types.CodeType:
    if bytecode != _BYTECODE:  # marshal would not notice: the code could crash this process
        raise pickle.UnpicklingError(
            f"a function sent by value from {bytecode} cannot run on {_BYTECODE}: use the "
            "same Python version (major.minor) on both sides"
        )
    return marshal.loads(code_bytes)


def _make_function(code: types.CodeType, base: dict, nfree: int | None) -> types.FunctionType:
    """The function, before its state: its globals dict and empty closure cells."""
    base["__builtins__"] = builtins.__dict__
    cells = None if nfree is None else tuple(types.CellType() for _ in range(nfree))
    return types.FunctionType(code, base, None, None, cells)


def _set_function_state(fn: types.FunctionType, state: tuple[dict, dict]) -> None:
    attributes, slots = state
    fn.__dict__.update(attributes)
    fn.__globals__.update(slots.pop("__globals__"))
    fn.__globals__["__builtins__"] = builtins.__dict__
    values = slots.pop("__closure__")
    slots.pop("submodules")  # imported while unpickling: that was their purpose
    for cell, value in zip(fn.__closure__ or (), values or (), strict=False):
        cell.cell_contents = value
    for name, value in slots.items():
        setattr(fn, name, value)
