"""Did unseeded tasks draw random numbers? Then their results cannot be reproduced.

R's future warns "UNRELIABLE VALUE" when a future used the random generator without
``seed=``. cheerful does the same, once per map: a chunk run without a seed notes whether
the global generators moved while it ran (Python's ``random``, numpy's global one; their
states are compared at the chunk's start and end, a few microseconds a chunk) or a task
asked for :func:`cheerful.task_rng`. The caller then warns with
:class:`UnseededRandomWarning`.
"""

from __future__ import annotations

import random
import sys
import warnings
from typing import Any

__all__ = ["RandomWatch", "UnseededRandomWarning", "warn_unseeded"]


class UnseededRandomWarning(UserWarning):
    """Tasks drew random numbers without ``seed=``: their results cannot be reproduced."""


class RandomWatch:
    """The global generators' states when a chunk starts; :meth:`moved` compares."""

    def __init__(self) -> None:
        self.python = _python_position()
        self.numpy = _numpy_position()

    def moved(self) -> bool:
        """True if a global generator was drawn from since (or reseeded)."""
        if _python_position() != self.python:
            return True
        now = _numpy_position()
        if self.numpy is None and now is not None:  # numpy was imported by a task: has
            return now[0] != _fresh_position()  # its global generator been drawn from?
        return now != self.numpy


def _fresh_position() -> int:
    """The position of numpy's Mersenne Twister right after seeding."""
    numpy = sys.modules["numpy"]
    return numpy.random.RandomState().get_state(legacy=False)["state"]["pos"]


def _python_position() -> tuple:
    """Where Python's global Mersenne Twister stands: its index, the start of its key and
    the spare gaussian. A draw moves the index, and 624 words of draws renew the key:
    comparing these is comparing the whole state, without 625 comparisons a chunk."""
    _, words, gauss = random.getstate()  # words: the key's 624, then the index
    return words[-1], words[:16], gauss


def _numpy_position() -> Any:
    """Where numpy's global Mersenne Twister stands: its position and the first 64 bytes
    of its key (None: numpy is not loaded)."""
    numpy = sys.modules.get("numpy")  # a task that never imported numpy never drew from it
    if numpy is None:
        return None
    address = _state_address(numpy)
    if address is None:
        state = numpy.random.get_state(legacy=False)
        return state.get("state", {}).get("pos"), bytes(memoryview(state["state"]["key"]))[:64]
    ctypes = sys.modules["ctypes"]  # loaded: numpy loads it, and _state_address needs it
    return ctypes.c_int.from_address(address + _KEY_BYTES).value, ctypes.string_at(address, 64)


_KEY_BYTES = 624 * 4  # numpy's mt19937_state: uint32_t key[624], then int pos
_direct: dict[int, bool] = {}  # id of a bit generator -> whether its memory reads right


def _state_address(numpy: Any) -> int | None:
    """The address of the global generator's state, to read it in a microsecond (its
    ``get_state`` copies it into a dict, some 50 microseconds: a fifth of a small chunk);
    None where that cannot be done or does not read what ``get_state`` says."""
    try:
        bits = numpy.random.get_bit_generator()  # numpy 1.25+
        address = bits.ctypes.state_address
    except Exception:  # noqa: BLE001 - an older numpy, or another generator: the slow way
        return None
    works = _direct.get(id(bits))
    if works is None:  # checked once per generator against what get_state says
        import ctypes

        state = bits.state
        works = state.get("bit_generator") == "MT19937" and (
            ctypes.c_int.from_address(address + _KEY_BYTES).value == state["state"]["pos"]
            and ctypes.string_at(address, 64) == bytes(memoryview(state["state"]["key"]))[:64]
        )
        _direct[id(bits)] = works
    return address if works else None


def warn_unseeded(label: str, stacklevel: int = 3) -> None:
    """Say, once for this map, that its tasks drew random numbers without a seed."""
    warnings.warn(
        f"tasks of {label} drew random numbers (random, numpy.random or cf.task_rng()) "
        "without seed=: their results cannot be reproduced; pass seed=... to get the same "
        "streams on every run and every plan",
        UnseededRandomWarning,
        stacklevel=stacklevel,
    )
