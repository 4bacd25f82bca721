"""LocalStore: a store on a directory, safe for many processes on one machine.

A key is a file path under the root. No half-written file is ever visible under a key: a
value is written to a temporary file in the same directory, then ``os.replace`` puts it in
place (``put``) or ``os.link`` gives it the key's name, which fails if the name exists
(``put_if_absent``: first write wins, also between processes; a key already there is
answered without writing anything). Temporary files are named ``.<name>.<random>.tmp``;
keys never have a segment starting with '.', and ``list`` skips such names. A write that
fails (a full disk, while writing, renaming or linking) removes its temporary file. With ``fsync=True`` the data and the directory are flushed to disk before a write
returns (slower; needed only to survive a power cut). Empty directories are removed when
their last key is deleted. ``OSError`` becomes :class:`~cheerful.errors.StoreError` in one
place, :func:`_translated`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from cheerful.errors import ObjectNotFound, StoreError

from .base import Store

__all__ = ["LocalStore"]

_OPEN_TRIES = 5


class LocalStore(Store):
    """A store in the directory ``root``, created if missing; with ``create=False`` it
    must exist (:class:`~cheerful.errors.StoreError` if not) and nothing is made."""

    def __init__(
        self, root: str | os.PathLike[str], *, fsync: bool = False, create: bool = True
    ) -> None:
        self.root = Path(root)
        self.fsync = fsync
        with _translated(self.root):
            if create:
                self.root.mkdir(parents=True, exist_ok=True)
            elif not self.root.is_dir():
                raise StoreError(f"local store: no directory {self.root}")

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        with _translated(key):
            temp = self._write_temp(path, data)
            try:
                os.replace(temp, path)
            except BaseException:
                _unlink(temp)
                raise
            self._sync_dir(path.parent)

    def _put_if_absent(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        with _translated(key):
            if path.is_file():  # a value is there: no need to write (nor room to)
                return False
            temp = self._write_temp(path, data)
            try:
                return self._link(temp, path)
            finally:
                _unlink(temp)

    def _get(self, key: str) -> bytes:
        with _translated(key):
            try:
                return self._path(key).read_bytes()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
                raise ObjectNotFound(f"no value under {key!r} in {self.root}") from exc

    def _exists(self, key: str) -> bool:
        with _translated(key):
            return self._path(key).is_file()

    def _list(self, prefix: str) -> Iterator[str]:
        path = self._path(prefix) if prefix else self.root
        if path.is_file():
            yield prefix
        elif path.is_dir():
            yield from self._walk(path, prefix + "/" if prefix else "")

    def _children(self, prefix: str) -> list[str]:
        path = self._path(prefix) if prefix else self.root
        return [entry.name for entry in _sorted_entries(path)] if path.is_dir() else []

    def _delete_keys(self, keys: list[str]) -> None:
        for key in keys:
            with _translated(key):
                self._delete_file(self._path(key))

    # Files and directories.

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def _write_temp(self, path: Path, data: bytes) -> Path:
        """Write ``data`` to a new temporary file next to ``path``; return its path. If
        anything fails (a full disk: while writing, flushing or closing), the temporary
        file is removed before the error goes on: a failed write leaves nothing behind."""
        temp = path.parent / f".{path.name[:100]}.{uuid.uuid4().hex}.tmp"
        file = self._open_new(temp)
        try:
            with file:
                file.write(data)
                if self.fsync:
                    file.flush()
                    os.fsync(file.fileno())
        except BaseException:
            _unlink(temp)
            raise
        return temp

    def _open_new(self, temp: Path) -> BinaryIO:
        """Create ``temp`` (it must not exist), making its directory; retry if a concurrent
        delete removes the directory before the file is in it."""
        for attempt in range(1, _OPEN_TRIES + 1):
            try:
                temp.parent.mkdir(parents=True, exist_ok=True)
                return open(temp, "xb")  # noqa: SIM115 - the caller closes it
            except FileNotFoundError:
                if attempt == _OPEN_TRIES:
                    raise
        raise AssertionError("not reached: the last attempt returns or raises")

    def _link(self, temp: Path, path: Path) -> bool:
        try:
            os.link(temp, path)
        except FileExistsError:
            return False
        self._sync_dir(path.parent)
        return True

    def _sync_dir(self, directory: Path) -> None:
        if not self.fsync:
            return
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _delete_file(self, path: Path) -> None:
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        self._prune(path.parent)

    def _prune(self, directory: Path) -> None:
        """Remove ``directory`` and its parents, up to the root, while they are empty."""
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:  # not empty, or already gone
                return
            directory = directory.parent

    def _walk(self, directory: Path, prefix: str) -> Iterator[str]:
        for entry in _sorted_entries(directory):
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(Path(entry.path), f"{prefix}{entry.name}/")
            else:
                yield prefix + entry.name


def _sorted_entries(directory: Path) -> list[os.DirEntry]:
    """The entries of ``directory`` but temporary files, sorted as their keys sort: a
    directory ``a`` sorts as ``a/``, so ``a-x`` comes before ``a/y``."""
    with _translated(directory):
        try:
            with os.scandir(directory) as entries:
                found = [entry for entry in entries if not entry.name.startswith(".")]
        except (FileNotFoundError, NotADirectoryError):  # removed meanwhile
            return []
    return sorted(found, key=lambda e: e.name + "/" if e.is_dir(follow_symlinks=False) else e.name)


def _unlink(path: Path) -> None:
    """Remove a temporary file if it is there; a failure here must not hide the error
    that led to it (the caller is already raising one, or has its answer)."""
    with suppress(OSError):
        path.unlink(missing_ok=True)


@contextmanager
def _translated(what: object) -> Iterator[None]:
    """The one place an OSError becomes a StoreError."""
    try:
        yield
    except OSError as exc:
        raise StoreError(f"local store, {what}: {exc}") from exc
