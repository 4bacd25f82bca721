"""The files durable tasks leave: ``cf.output_dir()`` inside a task, and reading them back.

Each task of a durable job gets an empty output directory (``$CHEERFUL_OUTPUT_DIR``); what
it holds when the attempt ends is stored, packed, at ``jobs/<job>/outputs/<ss>/<task>.<try>``
(:mod:`cheerful.durable.worker.places`). The files of a task are those of the attempt
its result came from. Outside a durable task (in ``cf.map``), ``cf.output_dir()`` is the
working directory: a function writes its files where a plain loop would.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from cheerful.errors import ObjectNotFound

from . import layout
from .files import extract_all
from .stores.base import Store

__all__ = ["OUTPUT_DIR_ENV", "download_outputs", "output_dir", "read_outputs"]

OUTPUT_DIR_ENV = "CHEERFUL_OUTPUT_DIR"
"""The environment variable naming a durable task's output directory."""


def output_dir() -> str:
    """The directory whose files are kept with this task's result (in a durable job; in
    ``cf.map``, the working directory). Command-mode programs read ``$CHEERFUL_OUTPUT_DIR``."""
    return os.environ.get(OUTPUT_DIR_ENV) or os.getcwd()


def read_outputs(store: Store, job: str, task: int, attempt: int) -> dict[str, bytes]:
    """The files attempt ``attempt`` of task ``task`` left, by path ({} if none)."""
    try:
        data = store.get(layout.output(job, task, attempt))
    except ObjectNotFound:
        return {}
    found = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive.getmembers():
            if member.isfile():
                found[member.name] = archive.extractfile(member).read()
    return found


def download_outputs(store: Store, job: str, task: int, attempt: int, into: Path) -> int:
    """Unpack the files of one attempt into ``into`` (made if needed); how many there were."""
    try:
        data = store.get(layout.output(job, task, attempt))
    except ObjectNotFound:
        return 0
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        count = sum(1 for m in archive.getmembers() if m.isfile())
        extract_all(archive, into)
    return count
