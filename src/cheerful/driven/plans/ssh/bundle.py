"""The code cheerful ships to an SSH host: its own package and its pure-Python dependency.

The host needs only Python: cheerful and cloudpickle travel as one zip, made once per
caller process, whose content hash names the host's cache entry (``TAG``), so a changed
checkout ships again and an unchanged one is found warm. rich and click stay behind:
nothing on the host's side imports them.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cheerful.byvalue import SHIPPED

__all__ = ["SHIPPED", "Bundle", "bundle"]

_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed times: the same files always make the same zip


@dataclass(frozen=True)
class Bundle:
    """The zip of the shipped packages, the cache entry it goes to and the bootstrap text."""

    tag: str
    zip: bytes
    boot: bytes


@functools.lru_cache(maxsize=1)
def bundle() -> Bundle:
    """The bundle of this process's cheerful (made once)."""
    files = sorted(_files())
    digest = hashlib.sha256()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, path in files:
            data = path.read_bytes()
            digest.update(name.encode() + b"\0" + data + b"\0")
            archive.writestr(zipfile.ZipInfo(name, _EPOCH), data, zipfile.ZIP_DEFLATED)
    from cheerful.version import __version__

    tag = f"cheerful-{__version__}-{digest.hexdigest()[:16]}"
    return Bundle(tag, out.getvalue(), (Path(__file__).parent / "boot.py").read_bytes())


def _files():
    for package in SHIPPED:
        root = Path(importlib.import_module(package).__file__).parent
        for path in root.rglob("*.py"):
            if "__pycache__" not in path.parts:
                yield f"{package}/{path.relative_to(root).as_posix()}", path
