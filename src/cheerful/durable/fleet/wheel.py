"""A wheel of the cheerful that is running now, for cloud workers to install.

A fleet's workers must run the same cheerful as the machine that submits: same message
format, same store layout. :func:`build_wheel` packs the importable package directory
(``cheerful.__path__[0]``, so it works for an editable install as for a regular one) with
the installed distribution's metadata (``METADATA`` with its ``Requires-Dist``, so pip
installs cloudpickle, rich and click, and ``entry_points.txt``, so the ``cheerful`` command
exists) into ``cheerful-<version>-py3-none-any.whl``, with its own ``WHEEL`` and
``RECORD``. No build backend runs and nothing is downloaded.

The bytes depend on the content only (sorted entries, fixed timestamps and modes), so the
same code gives the same wheel and :func:`wheel_digest` can name it in the store.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from cheerful.errors import ConfigError

__all__ = ["build_wheel", "wheel_digest", "wheel_name"]

DIST_NAME = "cheerful"
TAG = "py3-none-any"
_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say
_MODE = 0o100644 << 16  # a regular file, rw-r--r--
_SKIP_DIRS = {"__pycache__"}
_SKIP_SUFFIXES = (".pyc", ".pyo", ".swp", ".swo", "~", ".orig", ".rej")
_DIST_INFO_FILES = ("METADATA", "entry_points.txt")
_LICENSE = re.compile(r"(LICEN[CS]E|COPYING|NOTICE|AUTHORS)", re.IGNORECASE)


def wheel_name(version: str | None = None) -> str:
    """The file name of the wheel of ``version`` (default: the running cheerful's)."""
    return f"{DIST_NAME}-{_file_version(version or _running_version())}-{TAG}.whl"


def build_wheel(dest_dir: str | os.PathLike[str]) -> Path:
    """Write the wheel of the running cheerful into ``dest_dir`` (made if missing) and
    return its path. Raises ConfigError if cheerful's distribution metadata cannot be
    found (cheerful imported from a source tree that was never installed)."""
    import cheerful

    version = _running_version()
    package = Path(cheerful.__path__[0])
    dist_info = f"{DIST_NAME}-{_file_version(version)}.dist-info"

    entries: list[tuple[str, bytes]] = []
    for path in sorted(_package_files(package), key=lambda p: p.relative_to(package).as_posix()):
        arcname = f"{DIST_NAME}/{path.relative_to(package).as_posix()}"
        entries.append((arcname, path.read_bytes()))
    metadata = _metadata(version)
    for name in sorted(metadata):
        entries.append((f"{dist_info}/{name}", metadata[name]))
    entries.append((f"{dist_info}/WHEEL", _wheel_file()))
    record = f"{dist_info}/RECORD"
    entries.append((record, _record(entries, record)))

    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / wheel_name(version)
    fd, tmp = tempfile.mkstemp(dir=dest, prefix=".wheel-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out, zipfile.ZipFile(out, "w") as wheel:
            for arcname, data in entries:
                info = zipfile.ZipInfo(arcname, date_time=_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3  # unix, whatever the platform
                info.external_attr = _MODE
                wheel.writestr(info, data, compresslevel=9)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def wheel_digest(path: str | os.PathLike[str]) -> str:
    """The sha256 hex digest of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _running_version() -> str:
    import cheerful

    return cheerful.__version__


def _file_version(version: str) -> str:
    """A version as a wheel file name spells it (no '-')."""
    return version.replace("-", "_")


def _package_files(package: Path) -> list[Path]:
    """The package's files: no byte code, no hidden or editor files."""
    found = []
    for root, dirs, files in os.walk(package, followlinks=True):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS and not d.startswith(".")]
        for name in files:
            if name.startswith(".") or name.endswith(_SKIP_SUFFIXES):
                continue
            found.append(Path(root, name))
    if not any(p.name == "__init__.py" and p.parent == package for p in found):
        raise ConfigError(f"{package} is not the cheerful package (no __init__.py)")
    return found


def _metadata(version: str) -> dict[str, bytes]:
    """The installed distribution's METADATA (its Version set to ``version``),
    entry_points.txt and license files, by their names in the .dist-info."""
    from importlib import metadata as im

    try:
        dist = im.distribution(DIST_NAME)
    except im.PackageNotFoundError:
        raise ConfigError(
            "cannot build cheerful's wheel for the workers: cheerful's distribution metadata "
            "is not installed (cheerful runs from a source tree); install it with "
            "`pip install -e .` (or `pip install cheerful`) and run again"
        ) from None
    text = dist.read_text("METADATA")
    if not text:
        raise ConfigError(
            f"cannot build cheerful's wheel: the installed distribution ({dist}) has no "
            "METADATA; reinstall cheerful"
        )
    head, sep, body = text.partition("\n\n")
    head, found = re.subn(r"^Version:.*$", f"Version: {version}", head, count=1, flags=re.M)
    if not found:
        raise ConfigError("cannot build cheerful's wheel: the installed METADATA has no Version")
    files = {"METADATA": (head + sep + body).encode("utf-8")}
    for name in _DIST_INFO_FILES[1:]:
        content = dist.read_text(name)
        if content is not None:
            files[name] = content.encode("utf-8")
    for path in dist.files or ():
        parts = PurePosixPath(path).parts
        if len(parts) < 2 or not parts[0].endswith(".dist-info"):
            continue
        inner = "/".join(parts[1:])
        if parts[1] == "licenses" or (len(parts) == 2 and _LICENSE.match(parts[1])):
            located = Path(str(dist.locate_file(path)))
            if located.is_file():
                files[inner] = located.read_bytes()
    return files


def _wheel_file() -> bytes:
    lines = [
        "Wheel-Version: 1.0",
        "Generator: cheerful.durable.fleet.wheel",
        "Root-Is-Purelib: true",
    ]
    return "\n".join([*lines, f"Tag: {TAG}", ""]).encode()


def _record(entries: list[tuple[str, bytes]], record: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for arcname, data in entries:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        writer.writerow([arcname, f"sha256={digest.decode('ascii')}", len(data)])
    writer.writerow([record, "", ""])
    return out.getvalue().encode("utf-8")
