"""The globals guard's parts: sizes as people write them, the fast path, what gets named.

The behaviour on every plan kind is in ``tests/plans/test_function_size.py``.
"""

from __future__ import annotations

import functools
import math
import pickle
import warnings

import numpy as np
import pytest

import cheerful as cf
from cheerful.globals_guard import DEFAULT_GLOBALS_MAX, globals_max, guard, parse_size
from cheerful.serialize import check_function

TABLE = None  # set by a test: a global of a helper the task calls


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("123", 123),
        ("500MB", 500e6),
        ("2GB", 2e9),
        (" 2 gb ", 2e9),
        ("1.5GiB", 1.5 * 2**30),
        ("100kB", 100e3),
        ("64k", 64e3),
        ("1_000_000", 1e6),
        ("off", math.inf),
        ("None", math.inf),
        (2_000, 2000),
    ],
)
def test_sizes_are_read_as_people_write_them(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "0", "-1", "5XB", "", "1.2.3", True])
def test_a_bad_size_is_a_config_error_naming_the_variable(text):
    with pytest.raises(cf.ConfigError, match="CHEERFUL_GLOBALS_MAX"):
        parse_size(text)


def test_the_limit_comes_from_the_keyword_then_the_environment(monkeypatch):
    monkeypatch.delenv("CHEERFUL_GLOBALS_MAX", raising=False)
    assert globals_max() == DEFAULT_GLOBALS_MAX == 1_000_000_000
    monkeypatch.setenv("CHEERFUL_GLOBALS_MAX", "2GB")
    assert globals_max() == 2e9
    assert globals_max("300MB") == 3e8
    monkeypatch.setenv("CHEERFUL_GLOBALS_MAX", "plenty")
    with pytest.raises(cf.ConfigError, match="CHEERFUL_GLOBALS_MAX='plenty' is not a size"):
        check_function(abs)


def test_a_small_function_is_not_looked_into():
    def sizer(obj):
        raise AssertionError("the slow path ran for a small function")

    guard(abs, 1000, sizer)  # the whole cost: len(bytes) and a look at the environment


def test_the_keyword_limit_refuses(monkeypatch):
    data = np.ones(20_000)
    with pytest.raises(cf.FunctionTooLarge, match="closure variable 'data' 160.1 kB"):
        check_function(lambda i: data[i], max_bytes="100kB")
    assert check_function(lambda i: data[i], max_bytes="1MB")


def test_what_a_function_drags_along_is_named_with_its_path(monkeypatch):
    monkeypatch.setitem(globals(), "TABLE", {i: str(i) for i in range(30_000)})
    weights = np.ones(30_000)

    def helper(i):  # defined here, so sent by value with the globals it uses
        return len(TABLE[i])

    def task(i, scale=np.ones(20_000)):  # noqa: B008 - the default travels: it is measured
        return helper(i) + weights[i] * scale[i] + _helper(i)  # _helper: by reference

    with pytest.raises(cf.FunctionTooLarge) as info:
        check_function(task, max_bytes="10kB")
    labels = [label for label, _, _ in info.value.biggest]
    assert set(labels[:3]) == {
        "closure variable 'weights'",
        "closure variable 'helper' -> global 'TABLE'",
        "default of 'scale'",
    }
    assert [size for _, size, _ in info.value.biggest] == sorted(
        (size for _, size, _ in info.value.biggest), reverse=True
    )
    text = str(info.value)
    assert "(ndarray float64 (30000,))" in text and "(dict of 30000)" in text
    assert "task (tests.test_globals_guard:" in text or "task (test_globals_guard:" in text


def test_a_callable_objects_attributes_are_named():
    with pytest.raises(cf.FunctionTooLarge, match=r"_Scorer\.table 160\.1 kB") as info:
        check_function(_Scorer(np.ones(20_000)), max_bytes="10kB")
    assert "_Scorer (" in str(info.value)  # where its __call__ is defined


def test_the_warning_is_raised_once_and_says_what_to_do():
    data = np.ones(1_500_000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_function(functools.partial(_first, data))
    assert [w.category for w in caught] == [cf.LargeFunctionWarning]
    text = str(caught[0].message)
    assert "partial argument 0 12.0 MB" in text and "_first (" in text
    assert "functools.cache" in text and "Past 1.0 GB it is refused" in text
    assert caught[0].filename == __file__


def test_the_error_and_the_warning_travel_and_rebuild():
    error = cf.FunctionTooLarge("too big", size=5, limit=4, biggest=[("x", 5, "bytes")])
    again = pickle.loads(pickle.dumps(error))
    assert (str(again), again.size, again.limit, again.biggest) == ("too big", 5, 4, error.biggest)
    assert str(cf.LargeFunctionWarning("text only")) == "text only"  # as warnings makes one


def _helper(i):
    return len(TABLE[i])


def _first(data, i):
    return data[i]


class _Scorer:
    def __init__(self, table):
        self.table = table

    def __call__(self, i):
        return self.table[i]


def test_refusing_a_huge_function_does_not_build_its_pickle():
    import tracemalloc

    data = np.ones(5_000_000)  # 40 MB; the limit is 1 MB
    tracemalloc.start()
    try:
        with pytest.raises(cf.FunctionTooLarge, match="40.0 MB") as info:
            check_function(lambda i: data[i], max_bytes="1MB")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.size > 40_000_000
    assert peak < 10_000_000  # pickling stopped at the limit; sizes were counted, not kept
