"""Globals guarded, on every plan kind: a large function warns, one past the limit is refused.

What a task's function drags along (closure variables, globals of code sent by value,
defaults, a bound method's ``self``, a partial's arguments) is measured once per map from
the bytes the map pickles anyway. ``cf.sequential()`` pickles nothing, so nothing is
measured there: its tasks run on the caller's own objects, no copy is made, and measuring
would cost a full pickle of the function for every map (inner levels of nested maps are
often sequential). The limit is made small with ``CHEERFUL_GLOBALS_MAX`` so that no test
allocates more than a dozen megabytes.
"""

from __future__ import annotations

import functools
import os
import sys
import uuid
import warnings

import numpy as np
import pytest

import cheerful as cf
from cheerful.globals_guard import LARGE_FUNCTION_BYTES

TWELVE_MB = 1_500_000  # float64 items: 12 MB, just over the 10 MB warning threshold
BIG_GLOBAL = None  # set by a test: a module global, sent by value only where modules are


def _large_warnings(caught) -> list[warnings.WarningMessage]:
    return [w for w in caught if issubclass(w.category, cf.LargeFunctionWarning)]


def _kind(request) -> str:
    return request.node.callspec.params["plan_factory"]


def test_a_small_function_says_nothing(plan_factory):
    offset = np.arange(10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = cf.map(lambda i: int(offset[i]), range(10), plan=plan_factory())
    assert got == list(range(10))
    assert _large_warnings(caught) == []


def test_a_large_function_warns_naming_what_it_captures(plan_factory):
    plan = plan_factory()
    big_table = np.ones(TWELVE_MB)

    def lookup(i):
        return float(big_table[i])

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = cf.map(lookup, range(6), plan=plan, chunk_size=1)
    assert got == [1.0] * 6
    large = _large_warnings(caught)
    if plan.in_process:  # sequential: nothing is pickled, nothing measured (module doc)
        assert large == []
        return
    assert len(large) == 1, [str(w.message) for w in large]  # once per map, not per chunk
    warning = large[0]
    text = str(warning.message)
    assert issubclass(warning.category, UserWarning)
    assert "closure variable 'big_table' 12.0 MB (ndarray float64 (1500000,))" in text
    assert "lookup" in text and "test_function_size" in text  # where it was defined
    assert "CHEERFUL_GLOBALS_MAX" in text and "read the data inside the task" in text
    assert warning.message.size > LARGE_FUNCTION_BYTES
    assert warning.filename == __file__  # it points at the map call, not into cheerful


def test_a_function_over_the_limit_is_refused_before_anything_runs(
    plan_factory, monkeypatch, tmp_path
):
    monkeypatch.setenv("CHEERFUL_GLOBALS_MAX", "100kB")
    plan = plan_factory()
    big_table = np.ones(50_000)  # 400 kB
    ran = tmp_path / "ran"

    def lookup(i):
        ran.touch()
        return float(big_table[i])

    if plan.in_process:  # sequential: nothing travels, so no limit applies
        assert cf.map(lookup, range(3), plan=plan) == [1.0] * 3
        return
    with pytest.raises(cf.FunctionTooLarge) as info:
        cf.map(lookup, range(3), plan=plan)
    error = info.value
    assert isinstance(error, cf.SerializationError)
    text = str(error)
    assert "closure variable 'big_table' 400.1 kB" in text
    assert "over the limit of 100.0 kB (CHEERFUL_GLOBALS_MAX); nothing was run" in text
    assert "CHEERFUL_GLOBALS_MAX=" in text and "'off'" in text  # how to raise it
    assert error.limit == 100_000 and error.size > 400_000
    assert not ran.exists()


def test_the_limit_can_be_raised_or_lifted(plan_factory, monkeypatch):
    big_table = np.ones(50_000)
    monkeypatch.setenv("CHEERFUL_GLOBALS_MAX", "1MB")
    assert cf.map(lambda i: float(big_table[i]), range(3), plan=plan_factory()) == [1.0] * 3
    monkeypatch.setenv("CHEERFUL_GLOBALS_MAX", "off")
    assert cf.map(lambda i: float(big_table[i]), range(3), plan=plan_factory()) == [1.0] * 3


def test_a_partials_arguments_and_a_methods_self_are_named(plan_factory, monkeypatch):
    monkeypatch.setenv("CHEERFUL_GLOBALS_MAX", "100kB")
    plan = plan_factory()
    if plan.in_process:
        pytest.skip("cf.sequential() pickles nothing: nothing is measured (module doc)")
    with pytest.raises(cf.FunctionTooLarge, match="partial keyword 'table' 400.1 kB"):
        cf.map(functools.partial(_pick, table=np.ones(50_000)), range(3), plan=plan)
    with pytest.raises(cf.FunctionTooLarge, match=r"self\.weights 400\.1 kB"):
        cf.map(_Model(np.ones(50_000)).predict, range(3), plan=plan)


def test_an_executors_initializer_data_counts(plan_factory, monkeypatch):
    monkeypatch.setenv("CHEERFUL_GLOBALS_MAX", "100kB")
    plan = plan_factory()
    if plan.in_process:
        pytest.skip("cf.sequential() pickles nothing: nothing is measured (module doc)")
    with pytest.raises(cf.FunctionTooLarge, match="initargs 400.1 kB"):
        cf.Executor(plan, initializer=_pick, initargs=(0, np.ones(50_000)))


def test_a_module_global_counts_where_it_travels(plan_factory, monkeypatch, request):
    """A top-level function goes by reference to local workers (they import its module)
    but by value, with the globals it uses, to an SSH host or a durable job's workers:
    the warning comes where the bytes travel."""
    monkeypatch.setattr(sys.modules[__name__], "BIG_GLOBAL", np.ones(TWELVE_MB))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cf.map(_uses_big_global, range(4), plan=plan_factory()) == list(range(4))
    large = _large_warnings(caught)
    if _kind(request) in ("ssh", "durable"):
        assert len(large) == 1 and "global 'BIG_GLOBAL' 12.0 MB" in str(large[0].message)
    else:
        assert large == []


def test_a_function_is_loaded_once_per_worker_not_once_per_chunk(plan_factory):
    """Over 1 MB (Dask scatters it), 30 one-task chunks: each worker process rebuilds the
    captured data once (``_Counted`` counts its rebuilds in the worker's environment)."""
    counted = _Counted(np.ones(250_000), uuid.uuid4().hex)

    def loads_here(i):
        return os.getpid(), int(os.environ.get(counted.name, "0")), float(counted.array[i])

    got = cf.map(loads_here, range(30), plan=plan_factory(), chunk_size=1)
    assert [value for _, _, value in got] == [1.0] * 30
    per_worker: dict[int, int] = {}
    for pid, loads, _ in got:
        per_worker[pid] = max(per_worker.get(pid, 0), loads)
    assert set(per_worker.values()) <= {0, 1}, per_worker  # 0: in the caller (sequential)


def _rebuilt(array, token):
    name = f"CHEERFUL_TEST_LOADS_{token}"
    os.environ[name] = str(int(os.environ.get(name, "0")) + 1)
    return _Counted(array, token)


class _Counted:
    def __init__(self, array, token):
        self.array, self.token = array, token
        self.name = f"CHEERFUL_TEST_LOADS_{token}"

    def __reduce__(self):
        return _rebuilt, (self.array, self.token)


def _pick(i, table=None):
    return i


def _uses_big_global(i):
    return i if BIG_GLOBAL is None or i >= 0 else -1


class _Model:
    def __init__(self, weights):
        self.weights = weights

    def predict(self, i):
        return float(self.weights[i])
