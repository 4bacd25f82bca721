"""The small value classes a map moves (cheerful.record): fixed, comparable, replaceable,
and pickled as the dataclasses they replace were (so stored results still load)."""

from __future__ import annotations

import copyreg
import pickle

import pytest

import cheerful as cf
from cheerful.task import ChunkResult, ErrorInfo


def test_fields_are_fixed_once_made():
    result = ChunkResult(range(2), [1, 2])
    with pytest.raises(AttributeError, match="fixed"):
        result.values = []  # type: ignore[misc]
    with pytest.raises(AttributeError, match="fixed"):
        del result.values


def test_equal_by_value_and_replaced_field_by_field():
    a = ChunkResult((3,), [None], {3: ErrorInfo("E", "m", "tb")})
    b = ChunkResult((3,), [None], {3: ErrorInfo("E", "m", "tb")})
    assert a == b and a != a.replace(seconds=1.0)
    assert a.replace(seconds=1.0).seconds == 1.0 and a.seconds == 0.0
    with pytest.raises(TypeError, match="no field 'secs'"):
        a.replace(secs=1.0)


def test_a_record_pickles_as_its_class_and_fields():
    result = ChunkResult(range(2), [1, 2], outputs=None)
    reduced = result.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    assert reduced[0] is copyreg.__newobj__ and reduced[1] == (ChunkResult,)
    assert reduced[2] == vars(result)  # what a dataclass's pickle holds: its __dict__
    assert pickle.loads(pickle.dumps(result)) == result


def test_the_repr_names_the_fields():
    assert repr(cf.Failure(ValueError("x"), "tb", 3)) == "Failure(index=3, exception=ValueError('x'))"
    assert repr(ErrorInfo("E", "m", "tb")).startswith("ErrorInfo(type_name='E', message='m'")


def test_plans_key_their_kept_pools_by_value():
    assert cf.processes(2) == cf.processes(2) and hash(cf.processes(2)) == hash(cf.processes(2))
    assert cf.processes(2) != cf.processes(3) and cf.sequential() == cf.sequential()
    assert len({cf.processes(2), cf.processes(2), cf.sequential()}) == 2
