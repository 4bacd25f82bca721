"""The store protocol: opaque bytes under '/'-separated keys, the same on a disk and on S3.

The contract, kept by every store:

- ``put`` replaces a value atomically: a reader sees the old value or the new one, never a
  part. ``put_if_absent`` writes only when the key is absent; when processes race, exactly
  one wins and the value is the winner's (results are write-once, first write wins).
- ``get`` of an absent key raises :class:`~cheerful.errors.ObjectNotFound`; ``delete`` of an
  absent key does nothing.
- ``list(prefix)`` is directory-like: it yields, sorted, the keys equal to ``prefix`` or
  under ``prefix + "/"``; so ``list("a/b")`` yields ``a/b/c`` but never ``a/bc``. A
  trailing ``/`` on the prefix changes nothing, and ``""`` lists every key.
- A key is relative and '/'-separated, with no empty segment and no segment starting with
  ``.`` (so no ``.`` or ``..``; names starting with a dot are kept for a store's temporary
  files), no backslash or control character, and at most :data:`MAX_KEY_BYTES` in UTF-8.
  A key must not also be the prefix of another key (``a/b`` and ``a/b/c``): a directory
  cannot hold both. A bad key raises :class:`~cheerful.errors.ConfigError`.

:class:`Store` validates; an implementation overrides the small ``_hooks`` at the bottom.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterable, Iterator

from cheerful.errors import ConfigError

__all__ = ["MAX_KEY_BYTES", "Store", "validate_key", "validate_prefix"]

MAX_KEY_BYTES = 1024
"""The longest key, in UTF-8 bytes (the S3 limit)."""

_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


class Store(abc.ABC):
    """A store of opaque byte values under '/'-separated keys (see the module docstring)."""

    remote: bool = False
    """True where every call is a paid network request (S3): writers throttle harder."""

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, atomically replacing any value there."""
        self._put(validate_key(key), _as_bytes(data))

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Store ``data`` under ``key`` unless a value is there; True if this call wrote it."""
        return self._put_if_absent(validate_key(key), _as_bytes(data))

    def get(self, key: str) -> bytes:
        """Return the value under ``key``; raise ObjectNotFound if there is none."""
        return self._get(validate_key(key))

    def exists(self, key: str) -> bool:
        """Tell whether a value is stored under ``key``."""
        return self._exists(validate_key(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield, sorted, the keys equal to ``prefix`` or under ``prefix + "/"``."""
        prefix = validate_prefix(prefix)
        return (key for key in self._list(prefix) if _is_under(key, prefix))

    def children(self, prefix: str = "") -> list[str]:
        """The sorted names one level under ``prefix`` (like ``ls``): the next segment of
        every key under it, each once; ``children("jobs")`` lists job ids without reading
        every key of every job."""
        return sorted(set(self._children(validate_prefix(prefix))))

    def delete(self, key: str) -> None:
        """Delete the value under ``key``; do nothing if there is none."""
        self._delete_keys([validate_key(key)])

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key that ``list(prefix)`` yields (``prefix`` must not be empty);
        return how many there were."""
        if not validate_prefix(prefix):
            raise ConfigError("delete_prefix needs a prefix; it will not delete the whole store")
        keys = list(self.list(prefix))
        self._delete_keys(keys)
        return len(keys)

    def close(self) -> None:
        """Release the store's resources (a no-op where there are none)."""
        return None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # The hooks, called with validated keys.

    @abc.abstractmethod
    def _put(self, key: str, data: bytes) -> None:
        """Write ``data`` under ``key`` atomically."""

    @abc.abstractmethod
    def _put_if_absent(self, key: str, data: bytes) -> bool:
        """Write ``data`` under ``key`` only if absent, atomically; True if written."""

    @abc.abstractmethod
    def _get(self, key: str) -> bytes:
        """Read the value under ``key``, raising ObjectNotFound when absent."""

    @abc.abstractmethod
    def _exists(self, key: str) -> bool:
        """Tell whether ``key`` holds a value."""

    @abc.abstractmethod
    def _list(self, prefix: str) -> Iterable[str]:
        """Yield sorted keys: at least every key under ``prefix`` (more is filtered out)."""

    def _children(self, prefix: str) -> Iterable[str]:
        """The next segment of every key under ``prefix``; stores with a cheaper way
        (a directory listing, an S3 delimiter) override this."""
        start = len(prefix) + 1 if prefix else 0
        for key in self.list(prefix):
            if key != prefix:
                yield key[start:].split("/", 1)[0]

    @abc.abstractmethod
    def _delete_keys(self, keys: list[str]) -> None:
        """Delete ``keys``, ignoring absent ones."""


def validate_key(key: str) -> str:
    """Return ``key`` if it is a valid store key (see the module docstring), else raise
    ConfigError saying what is wrong."""
    if not isinstance(key, str) or not key:
        raise ConfigError(f"a store key is a non-empty str, not {key!r}")
    if key.startswith("/"):
        raise ConfigError(f"store key {key!r} must be relative: drop the leading '/'")
    if _BAD_CHARS.search(key):
        raise ConfigError(f"store key {key!r} has a backslash or control character")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise ConfigError(f"store key {key[:60]!r}... is over {MAX_KEY_BYTES} bytes")
    for segment in key.split("/"):
        _check_segment(key, segment)
    return key


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` without a trailing '/', after checking it as a key; '' is valid."""
    if prefix == "" or prefix == "/":
        return ""
    if isinstance(prefix, str) and prefix.endswith("/"):
        prefix = prefix[:-1]
    return validate_key(prefix)


def _check_segment(key: str, segment: str) -> None:
    if not segment:
        raise ConfigError(f"store key {key!r} has an empty segment ('//' or a trailing '/')")
    if segment.startswith("."):
        raise ConfigError(
            f"store key {key!r} has a segment starting with '.' ('.', '..' and dot names "
            "are reserved)"
        )


def _is_under(key: str, prefix: str) -> bool:
    return not prefix or key == prefix or key.startswith(prefix + "/")


def _as_bytes(data: bytes) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise ConfigError(f"a store value is bytes, not {type(data).__name__}; serialize it first")
