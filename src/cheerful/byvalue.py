"""Which of the caller's modules travel by value to another machine.

cloudpickle sends a function from an importable module by reference (module and name);
on an SSH host or a cloud worker that lacks the module (the user's script directory, a
test file, a project checked out only here) it could not be loaded. Modules loaded from
outside the Python installation (not the standard library, not site-packages) are
therefore sent by value while a chunk for a host, or a durable job's code and inputs, are
pickled; cheerful and cloudpickle are on every worker (:data:`SHIPPED`), so they stay by
reference. A class sent by value keeps its identity on the way back (cloudpickle tracks
it), so a task's own exception type is still ``except``-able in the caller.
"""

from __future__ import annotations

import contextlib
import functools
import os
import site
import sys
import sysconfig
from collections.abc import Iterator
from contextlib import contextmanager

import cloudpickle

__all__ = ["SHIPPED", "by_value", "local_modules"]

SHIPPED = ("cheerful", "cloudpickle")
"""Packages every worker has (an SSH host gets them in the bundle, a cloud worker in its
install): modules of theirs are pickled by reference."""


def local_modules() -> list[str]:
    """Names of the loaded modules that another machine's Python may not be able to import."""
    return sorted(name for name, module in list(sys.modules.items()) if _is_local(name, module))


_seen: dict[tuple[str, int], bool] = {}  # modules already looked at (realpath is slow)


def _is_local(name: str, module) -> bool:
    key = (name, id(module))
    if key not in _seen:
        path = getattr(module, "__file__", None)
        shipped = name == "__main__" or name.split(".")[0] in SHIPPED
        local = bool(path) and not shipped
        _seen[key] = local and not os.path.realpath(path).startswith(_installed_dirs())
    return _seen[key]


@contextmanager
def by_value(names: list[str]) -> Iterator[None]:
    """Pickle the modules ``names`` (and their submodules) by value inside the block."""
    added = []
    for name in names:
        module = sys.modules.get(name)
        if module is None:
            continue
        try:
            cloudpickle.register_pickle_by_value(module)
            added.append(module)
        except ValueError:  # already registered (by the user, or another thread)
            pass
    try:
        yield
    finally:
        for module in added:
            with contextlib.suppress(ValueError):
                cloudpickle.unregister_pickle_by_value(module)


@functools.lru_cache(maxsize=1)
def _installed_dirs() -> tuple[str, ...]:
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths.update(p for p in sysconfig.get_paths().values() if p)
    paths.update(getattr(site, "getsitepackages", list)())
    paths.add(site.getusersitepackages())
    real = {os.path.realpath(p) for p in paths if p}
    return tuple(p.rstrip(os.sep) + os.sep for p in real)
