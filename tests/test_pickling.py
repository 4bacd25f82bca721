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


SCRIPT = '''
import concurrent.futures
import sys
import types
from typing import TypeVar

from cheerful.serialize import dumps

SCALE = 3
payload = bytes(10_000_000)  # named by attribute only below: must not travel


def helper(x):
    return x * SCALE


def script_fn(x, k=2, *, z=1):
    """doc"""
    return helper(x) + k + z


script_fn.tag = "kept"


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def outer():
    offset = 10

    def inner(x):
        return [x + offset + SCALE for _ in range(1)][0]

    return inner


def pool_name(box):
    return concurrent.futures.ThreadPoolExecutor.__name__ + str(len(box.payload))


def bump():
    global SCALE
    SCALE += 1
    return SCALE


class Box:
    payload = b"ab"


def boxed():
    return Box()


def unbound():
    def later():
        return late
    data = dumps(later)
    late = 1
    return data


T = TypeVar("T")


def generic(x: T) -> list[T]:
    return [x]


def as_method(self):
    return ("bound", self)


def make_adder(k):
    def add(x):
        return x + k

    return add


plain = [script_fn, fib, outer(), pool_name, bump, helper]
more = [types.MethodType(as_method, 5), [make_adder(k) for k in range(50)]]
with open(sys.argv[1], "wb") as out:
    for obj in (plain, boxed, unbound(), more, generic):
        data = obj if isinstance(obj, bytes) else dumps(obj)
        out.write(len(data).to_bytes(8, "big") + data)
print("cloudpickle" in sys.modules)
'''

LOAD = '''
import pickle, sys
with open(sys.argv[1], "rb") as f:
    blobs = []
    while size := f.read(8):
        blobs.append(f.read(int.from_bytes(size, "big")))
fns = pickle.loads(blobs[0])
script_fn, fib, inner, pool_name, bump, helper = fns
class Holder:
    payload = b"xyz"
print(script_fn(1), script_fn.tag, script_fn.__doc__, script_fn.__kwdefaults__)
print(fib(10), inner(1), pool_name(Holder), script_fn.__code__.co_filename == sys.argv[2])
print(bump(), helper(1), bump.__globals__ is helper.__globals__, "payload" in helper.__globals__)
print("cloudpickle" in sys.modules, [len(b) < 100_000 for b in blobs])
print(pickle.loads(blobs[1])().__class__.__name__, "cloudpickle" in sys.modules)
method, adders = pickle.loads(blobs[3])
print(method(), len({id(a.__code__) for a in adders}), sum(a(1) for a in adders))
print(pickle.loads(blobs[4])(1))
'''


def test_a_script_function_travels_by_value_without_cloudpickle(tmp_path):
    """A script's functions go by value through the C pickler, as cloudpickle would send
    them, and come back in a fresh interpreter that never saw the script; a class of the
    script still needs cloudpickle, and gets it."""
    import subprocess
    import sys

    script, blobs = tmp_path / "script.py", tmp_path / "blobs"
    script.write_text(SCRIPT)
    made = subprocess.run(
        [sys.executable, str(script), str(blobs)], capture_output=True, text=True, timeout=60
    )
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "True"  # the class (blob 1) and the empty cell (blob 2)
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD, str(blobs), str(script)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path.parent,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.splitlines() == [
        "6 kept doc {'z': 1}",
        "55 14 ThreadPoolExecutor3 True",  # concurrent.futures came as a submodule
        "4 4 True False",  # one globals dict per pickle, as cloudpickle gives
        "False [True, True, True, True, True]",
        "Box True",
        "('bound', 5) 1 1275",  # the function bound, not a name; one code for 50 closures
        "[1]",  # a TypeVar of the script: cloudpickle sends it by value
    ]
    data, sent = blobs.read_bytes(), []
    while data:
        size = int.from_bytes(data[:8], "big")
        sent, data = [*sent, data[8 : 8 + size]], data[8 + size :]
    by_cloudpickle = [any(n.startswith("cloudpickle") for n in _globals_named(b)) for b in sent]
    assert by_cloudpickle == [False, True, True, False, True]


def test_an_empty_closure_cell_goes_to_cloudpickle():
    def later():
        return late  # noqa: F821 - bound below, after pickling

    data = dumps(later)
    late = 5
    assert any(name.startswith("cloudpickle") for name in _globals_named(data))
    assert late == 5


def test_code_sent_by_value_refuses_another_python(monkeypatch):
    """marshal would load another version's bytecode without a word (and may crash on
    it): the function names both versions instead."""
    import cheerful.plainvalue

    data = dumps(lambda x: x + 1)
    monkeypatch.setattr(cheerful.plainvalue, "_BYTECODE", "cpython-399")
    with pytest.raises(pickle.UnpicklingError, match="from cpython-3.* cannot run on cpython-399"):
        loads(data)


class Base:
    def who(self):
        return "Base"


class Child(Base):
    def who(self):
        return "Child"

    def __secret(self):
        return "secret"

    def secret(self):
        return self.__secret

    def base_who(self):
        return super().who


def test_a_bound_method_comes_back_as_the_same_function_on_the_same_object():
    """Not as ``getattr(object, name)``: a private name, super()'s method and a function
    bound to any object come back as they were (as cloudpickle sends them)."""
    assert loads(dumps(Child().secret()))() == "secret"
    assert loads(dumps(Child().base_who()))() == "Base"
    assert loads(dumps(types.MethodType(module_level, 4)))() == 5


def test_optional_annotations_stay_with_plain_pickle():
    import typing

    def annotated(x: int | None = None) -> typing.Optional[str]:  # noqa: UP045 - the case
        return str(x)

    data = dumps(annotated)
    assert not any(name.startswith("cloudpickle") for name in _globals_named(data))
    assert loads(data)(3) == "3"
