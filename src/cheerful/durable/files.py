"""Job files: the directory and files a job's tasks run among, shipped once through the store.

``--workdir DIR`` (``workdir=``) ships a directory, ``--files PATH ...`` (``files=``) files
and directories; a command job also ships the files its command names that exist here
(``runme.R`` of ``Rscript runme.R``). They are packed into one deterministic ``tar.gz``
(sorted, no times or owners: the same files make the same bytes) stored at
``files/<sha256>``: a second job with the same files uploads nothing. A worker unpacks it
once per job into a template directory; every task runs in a fresh copy of it (its working
directory), so a task that writes there cannot disturb another.

What is left out: version control (``.git``...), cheerful's own ``.cheerful``, Python
caches and virtual environments (a directory holding ``pyvenv.cfg``), ``node_modules``. A
pack over :data:`MAX_FILES_BYTES` (before compression) is refused with what to do.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shlex
import stat
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cheerful.errors import ConfigError, ObjectNotFound

from . import layout
from .stores.base import Store

__all__ = [
    "EXCLUDED",
    "MAX_FILES_BYTES",
    "JobFiles",
    "Packed",
    "command_files",
    "extract_all",
    "pack",
    "unpack",
    "upload",
]

MAX_FILES_BYTES = 2 * 1024**3
"""The most a job's files may weigh, before compression (every worker downloads them)."""
EXCLUDED = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".cheerful",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".ipynb_checkpoints",
        ".tox",
        ".nox",
        "node_modules",
        ".DS_Store",
    }
)
"""Names never shipped (and a directory holding ``pyvenv.cfg``: a virtual environment)."""
LISTED = 20
"""How many of a pack's paths its summary keeps (for ``--dry-run`` and ``status``)."""


@dataclass(frozen=True)
class JobFiles:
    """What a job ships: the pack's digest and sizes, how many files, the first paths."""

    digest: str
    packed: int
    size: int
    count: int
    names: tuple[str, ...]

    def to_manifest(self) -> dict:
        """The manifest's ``files`` entry."""
        return {
            "digest": self.digest,
            "packed": self.packed,
            "size": self.size,
            "count": self.count,
            "names": list(self.names),
        }

    @classmethod
    def from_manifest(cls, data: dict | None) -> JobFiles | None:
        """Read a manifest's ``files`` entry (None when the job ships no file)."""
        if not data:
            return None
        return cls(
            str(data["digest"]),
            int(data["packed"]),
            int(data["size"]),
            int(data["count"]),
            tuple(data.get("names", ())),
        )

    def describe(self) -> str:
        """One line: how many files, how big, the first names."""
        shown = ", ".join(self.names[:5]) + (", ..." if self.count > 5 else "")
        return f"{self.count} file(s), {_size(self.size)} ({_size(self.packed)} packed): {shown}"


@dataclass(frozen=True)
class Packed:
    """A pack ready to store: its bytes and what it holds."""

    data: bytes
    files: JobFiles


def pack(
    workdir: str | os.PathLike[str] | None = None,
    files: Sequence[str | os.PathLike[str]] = (),
    named: Sequence[str] = (),
) -> Packed:
    """Pack ``workdir``'s content, ``files`` (each at the top by its name; a directory
    with its content) and ``named`` (relative paths kept as they are: the files a command
    names). Raises ConfigError for a missing path, two entries with one name, or a pack
    over :data:`MAX_FILES_BYTES`."""
    entries: dict[str, Path] = {}
    if workdir is not None:
        root = _existing(workdir, "--workdir")
        if not root.is_dir():
            raise ConfigError(f"--workdir {os.fspath(workdir)}: not a directory")
        entries.update(_walk(root, PurePosixPath()))
    given_paths = [(p, PurePosixPath(Path(p).name)) for p in files]
    given_paths += [(p, PurePosixPath(Path(p).as_posix())) for p in named]
    for given, name in given_paths:
        path = _existing(given, "--files")
        found = dict(_walk(path, name)) if path.is_dir() else {str(name): path}
        for arc in found:
            if arc in entries and entries[arc].resolve() != found[arc].resolve():
                raise ConfigError(f"two job files would both be {arc!r}: rename one")
        entries.update(found)
    if not entries:
        raise ConfigError("no file to ship: the paths given hold no file (all left out?)")
    total = sum(path.stat().st_size for path in entries.values())
    if total > MAX_FILES_BYTES:
        raise ConfigError(
            f"the job's files weigh {_size(total)}, over the limit of {_size(MAX_FILES_BYTES)}: "
            "ship less (leave big data in the store or a bucket and read it from the tasks)"
        )
    data = _tar(sorted(entries.items()))
    digest = hashlib.sha256(data).hexdigest()
    names = tuple(sorted(entries)[:LISTED])
    return Packed(data, JobFiles(digest, len(data), total, len(entries), names))


def upload(store: Store, packed: Packed) -> bool:
    """Store the pack under its digest unless it is there; True if it was uploaded."""
    key = layout.files_pack(packed.files.digest)
    if store.exists(key):
        return False
    store.put(key, packed.data)
    return True


def unpack(store: Store, digest: str, into: str | os.PathLike[str]) -> Path:
    """Unpack the pack ``digest`` into directory ``into`` (made; a pack already unpacked
    there is kept) and return it."""
    target = Path(into)
    done = target / ".cheerful-unpacked"
    if done.exists():
        return target
    try:
        data = store.get(layout.files_pack(digest))
    except ObjectNotFound as exc:
        raise ConfigError(f"the job's files {digest[:12]} are gone from the store") from exc
    if hashlib.sha256(data).hexdigest() != digest:
        raise ConfigError(f"the job's files {digest[:12]} in the store are damaged")
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        extract_all(archive, target)
    done.touch()
    return target


def command_files(command: str | Sequence[str], here: str | os.PathLike[str] = ".") -> list[str]:
    """The files a command names that exist under ``here`` (relative paths only): what a
    worker elsewhere would not have (``runme.R`` of ``Rscript runme.R``)."""
    words = shlex.split(command) if isinstance(command, str) else list(command)
    base = Path(here).resolve()
    found = []
    for word in words:
        if word.startswith("-") or os.path.isabs(word) or "=" in word or not word.strip():
            continue
        path = (base / word).resolve()
        if path.is_file() and base in path.parents and word not in found:
            found.append(word)
    return found


def extract_all(archive: tarfile.TarFile, target: Path) -> None:
    """Extract ``archive`` into ``target``, refusing links and paths that leave it."""
    if hasattr(tarfile, "data_filter"):  # Python 3.10.12+, 3.11.4+
        archive.extractall(target, filter="data")
        return
    for member in archive.getmembers():  # pragma: no cover - older Pythons
        where = (target / member.name).resolve()
        if not (member.isfile() or member.isdir()) or target.resolve() not in where.parents:
            raise ConfigError(f"refusing {member.name!r} in a pack")
    archive.extractall(target)


def _existing(path: str | os.PathLike[str], what: str) -> Path:
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise ConfigError(f"{what} {os.fspath(path)}: no such file or directory")
    return resolved


def _walk(root: Path, arc: PurePosixPath) -> Iterator[tuple[str, Path]]:
    """``(path in the pack, path here)`` of every file under ``root``, left-outs skipped."""
    for directory, dirs, names in os.walk(root):
        where = Path(directory)
        dirs[:] = sorted(
            d for d in dirs if d not in EXCLUDED and not (where / d / "pyvenv.cfg").exists()
        )
        for name in sorted(names):
            path = where / name
            if name in EXCLUDED or not path.is_file():
                continue
            yield str(arc / path.relative_to(root).as_posix()), path


def _tar(entries: Iterable[tuple[str, Path]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, path in entries:
            info = tarfile.TarInfo(name)
            info.size = path.stat().st_size
            executable = path.stat().st_mode & stat.S_IXUSR
            info.mode = 0o755 if executable else 0o644
            with open(path, "rb") as file:
                archive.addfile(info, file)
    return gzip.compress(raw.getvalue(), mtime=0)


def _size(count: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} bytes"  # pragma: no cover
