"""Where a durable task runs, inside its slot process: its own working directory and its
own output directory.

A job that ships files (:mod:`cheerful.durable.files`) has them unpacked once per worker
into a template directory; each task runs in a fresh copy of it, as its working directory,
so a task that writes there cannot disturb another. Every task gets an empty output
directory, named by ``$CHEERFUL_OUTPUT_DIR`` (``cf.output_dir()`` in Python); what it holds
when the task ends is packed and stored, write-once, at
``jobs/<job>/outputs/<ss>/<task>.<attempt>`` (a duplicate delivery cannot replace it). If
that store fails, the task fails (it runs again): no output is silently lost.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cheerful.task import current_task

from .. import layout
from ..outputs import OUTPUT_DIR_ENV
from ..stores.base import Store

__all__ = ["TASK_ENV", "TaskPlaces", "pack_outputs"]

TASK_ENV = "CHEERFUL_TASK"
"""The environment variable holding the running task's index."""


class TaskPlaces:
    """The working and output directories of the tasks one slot runs, under ``scratch``."""

    def __init__(self, scratch: str | os.PathLike[str], store: Store | None) -> None:
        self.scratch, self.store = Path(scratch), store
        self.seconds: dict[int, float] = {}  # how long each task of the chunk ran

    def wrap(
        self, fn: Callable, job: str, template: str | None, attempts: dict[int, int]
    ) -> Callable:
        """``fn``, run by each task in its places; ``attempts`` numbers each task's try."""

        def in_place(*args: Any, **kwargs: Any) -> Any:
            index = current_task().index
            started = time.perf_counter()
            try:
                with self.around(job, index, attempts.get(index, 1), template):
                    return fn(*args, **kwargs)
            finally:
                self.seconds[index] = time.perf_counter() - started

        return in_place

    @contextlib.contextmanager
    def around(self, job: str, index: int, attempt: int, template: str | None) -> Iterator[None]:
        """Run the block as task ``index`` (attempt ``attempt``) of ``job``: in a copy of
        ``template`` when the job ships files, with an empty output directory."""
        work, out = self.scratch / "work", self.scratch / "out"
        if not out.is_dir():  # kept from task to task while tasks leave it empty (cheap)
            if out.is_symlink() or out.exists():
                out.unlink()  # a task put a file or a link in its place
            out.mkdir(parents=True)
        if template is not None:
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(template, work, ignore=shutil.ignore_patterns(".cheerful-unpacked"))
        saved_cwd = os.getcwd() if template is not None else None
        saved_env = {name: os.environ.get(name) for name in (OUTPUT_DIR_ENV, TASK_ENV)}
        os.environ[OUTPUT_DIR_ENV], os.environ[TASK_ENV] = str(out), str(index)
        if saved_cwd is not None:
            os.chdir(work)
        try:
            yield
        finally:
            if saved_cwd is not None:
                os.chdir(saved_cwd)
            for name, value in saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            left = _holds_anything(out)
            try:
                if left:
                    self._keep(out, job, index, attempt)
            finally:
                if template is not None:
                    shutil.rmtree(work, ignore_errors=True)
                if left:  # the next task gets an empty one
                    shutil.rmtree(out, ignore_errors=True)

    def _keep(self, out: Path, job: str, index: int, attempt: int) -> None:
        """Store what the task left in its output directory."""
        if self.store is None:
            return
        key = layout.output(job, index, min(attempt, 10**layout.ATTEMPT_WIDTH - 1))
        self.store.put_if_absent(key, pack_outputs(out))


def _holds_anything(directory: Path) -> bool:
    """True unless ``directory`` is an empty directory (a task may even have removed it)."""
    try:
        with os.scandir(directory) as entries:
            return next(entries, None) is not None
    except OSError:
        return False  # removed or replaced by the task: nothing to keep, made anew next time

def pack_outputs(directory: Path) -> bytes:
    """A ``tar.gz`` of the files under ``directory`` (paths relative to it)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file() and not path.is_symlink():
                archive.add(path, arcname=path.relative_to(directory).as_posix())
    return raw.getvalue()
