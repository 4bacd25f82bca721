"""Small immutable value classes for the hot path: :class:`Record`.

What ``@dataclass(frozen=True)`` gives (equality, a readable repr, ``replace``, no
assignment after ``__init__``) for the values every map moves (chunks, results, work,
events), without loading :mod:`dataclasses` on the way to a first result: that module
and the ``inspect`` it loads, plus the code generated per class, were a third of what
``cf.map`` took to import. A subclass lists its fields in order in ``FIELDS`` and sets
them in ``__init__`` with :meth:`Record._set`. It pickles as a dataclass does (its class
and its ``__dict__``), so records stored by earlier versions still load.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

__all__ = ["Record"]

R = TypeVar("R", bound="Record")


class Record:
    """A value with named fields, fixed once made (see the module docstring)."""

    FIELDS: ClassVar[tuple[str, ...]] = ()

    def _set(self, **fields: Any) -> None:
        """Set the fields (from ``__init__``); assignment is refused afterwards."""
        self.__dict__.update(fields)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: a {type(self).__name__} is fixed")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: a {type(self).__name__} is fixed")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment] - fields may be lists and dicts

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.FIELDS)
        return f"{type(self).__name__}({shown})"

    def replace(self: R, **changes: Any) -> R:
        """A copy with ``changes`` to some fields (as ``dataclasses.replace``)."""
        unknown = set(changes) - set(self.FIELDS)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {sorted(unknown)[0]!r}")
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__, **changes)
        return copy
