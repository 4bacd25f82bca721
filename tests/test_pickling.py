"""cheerful pickles with the C pickler where that gives what cloudpickle would, and with
cloudpickle wherever something must travel by value (cheerful.serialize)."""

from __future__ import annotations

import pickle
import pickletools
import types

import pytest

from cheerful.byvalue import by_value
from cheerful.serialize import check_function, check_items, dumps, dumps_oob, loads, loads_oob


def module_level(x):
    return x + 1


class ModuleLevel:
    def __init__(self, value):
        self.value = value


def _globals_named(data: bytes) -> set[str]:
    """The module-and-name references a pickle makes (what travels by reference)."""
    names, pending = set(), []
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            pending = [*pending[-1:], arg]
        elif op.name == "STACK_GLOBAL" and len(pending) == 2:
            names.add(".".join(pending))
    return names


def test_a_module_function_travels_by_reference():
    data = dumps(module_level)
    assert f"{__name__}.module_level" in _globals_named(data)
    assert loads(data) is module_level


def test_instances_of_a_module_class_keep_their_class():
    data, buffers = dumps_oob([ModuleLevel(3), ModuleLevel(4)])
    back = loads_oob(data, buffers)
    assert [type(v) for v in back] == [ModuleLevel, ModuleLevel] and back[1].value == 4


def test_what_cannot_be_found_by_name_travels_by_value():
    def inner(x):
        return x * 2

    lam = lambda x: x - 1  # noqa: E731 - a lambda is the case
    local_class = type("Local", (), {"twice": staticmethod(inner)})
    for fn in (inner, lam):
        back = loads(dumps(fn))
        assert back is not fn and back(5) == fn(5)
    assert loads(dumps(local_class)).twice(4) == 8


def test_a_main_function_travels_by_value():
    main_fn = types.FunctionType(module_level.__code__, {"__name__": "__main__"}, "main_fn")
    main_fn.__module__ = "__main__"
    back = loads(dumps(main_fn))
    assert back is not main_fn and back(1) == 2


def test_modules_registered_by_value_are_sent_by_value():
    with by_value([__name__]):
        data = dumps(module_level)
    assert f"{__name__}.module_level" not in _globals_named(data)
    assert loads(data)(1) == 2


def test_what_plain_pickle_refuses_is_handed_to_cloudpickle():
    keys = {"a": 1}.keys()  # plain pickle cannot pickle a dict view; cloudpickle can
    with pytest.raises(TypeError):
        pickle.dumps(keys)
    assert list(loads(dumps(keys))) == ["a"]


def test_what_nothing_can_pickle_is_still_named():
    import threading

    with pytest.raises(Exception, match="task 2"):
        check_items([1, 2, threading.Lock()])
    assert check_function(module_level)  # and a good one passes
