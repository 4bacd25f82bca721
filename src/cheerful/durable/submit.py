"""Submit a durable job: validate, store the code and a manifest, send the chunks.

``submit``, ``submit_script`` and ``submit_command`` all reduce to function mode: one
picklable callable (the function, a :class:`~cheerful.durable.modes.ScriptTask` or a
:class:`~cheerful.durable.modes.CommandTask`) stored once at ``code.pkl``, one item per task. Every
check (the function and every item pickle, envs, options) happens before anything is
stored or sent. The manifest (``manifest.json``) is written before the first message, so a
worker never meets a message of an unknown job, and ``submitted`` after the last one, so
a submit cut short (its process killed mid-send) is known: ``Job.status()`` says the job
is incomplete and ``Job.wait()`` raises instead of waiting for tasks that never went out.
See ``docs/durable.md``.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cheerful.byvalue import by_value, local_modules
from cheerful.errors import ConfigError, JobError
from cheerful.serialize import check_function, check_items, dumps
from cheerful.task import as_items

from . import layout
from .backends import Backend, open_backend
from .code import command_task, script_task
from .envs import check_envs
from .files import JobFiles, Packed, command_files, pack, upload
from .job import BackendLike, Job
from .sending import json_bytes, send_chunks

__all__ = [
    "Preview",
    "auto_chunk_size",
    "pack_files",
    "preview",
    "submit",
    "submit_command",
    "submit_script",
]

MAX_AUTO_CHUNK = 1000
"""The largest automatic chunk size."""
MAX_AUTO_CHUNK_REMOTE = 100
"""The same on SQS + S3, where a job's tasks may be long and its workers many: a chunk of
1,000 half-minute tasks would hold one slot for eight hours while others stand idle."""
AUTO_CHUNKS = 200
"""The automatic chunk size aims for about this many chunks."""
AUTO_CHUNKS_REMOTE = 100
"""The same on a backend where every request is paid (SQS + S3)."""
CHUNKS_PER_SLOT = 8
"""Given the slots that will run a job, the automatic chunk size gives each about this many
chunks: each slot's last chunk sets the job's tail, so a finer cut ends sooner (the fleet
simulation: 25-task chunks beat 63-task ones by 6 % in time and dollars at 100 instances)."""
ITEMS_KEPT_BYTES = 16 * 1024 * 1024
"""A job whose inputs pickle to at most this keeps them whole (one object), so that a
table of its results shows each task's env or input beside its result."""
MAX_NAME = 100
"""The longest job name (the id adds a time stamp and a random part)."""


@dataclass(frozen=True)
class _Options:
    """What every submit takes besides the work itself."""

    backend: BackendLike = "local"
    chunk_size: int | None = None
    seed: int | None = None
    retries: int = 2
    timeout: float | None = None
    name: str | None = None
    files: tuple[str, ...] = ()
    workdir: str | None = None

    def __post_init__(self) -> None:
        _check_whole("chunk_size", self.chunk_size, 1, optional=True)
        _check_whole("seed", self.seed, 0, optional=True)
        _check_whole("retries", self.retries, 0)
        if self.timeout is not None and (
            isinstance(self.timeout, bool)
            or not isinstance(self.timeout, (int, float))
            or not self.timeout > 0
        ):
            raise ConfigError(f"timeout must be a positive number of seconds, not {self.timeout!r}")
        if self.name is not None:
            layout.validate_id(self.name, "job name")
            if len(self.name) > MAX_NAME:
                raise ConfigError(f"job name {self.name[:20]!r}... is over {MAX_NAME} characters")


def _check_whole(what: str, value: Any, least: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"{what} must be a whole number of at least {least}, not {value!r}")


def submit(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    backend: BackendLike = "local",
    chunk_size: int | None = None,
    seed: int | None = None,
    retries: int = 2,
    timeout: float | None = None,
    name: str | None = None,
    files: Sequence[str | os.PathLike[str]] = (),
    workdir: str | os.PathLike[str] | None = None,
) -> Job:
    """Submit ``[fn(x) for x in items]`` as a durable job; return its :class:`Job` at once.

    ``seed`` gives task ``i`` the same random streams as ``cf.map(..., seed=seed)``; a task
    that raises is run again up to ``retries`` more times; ``timeout`` (seconds) stops a
    task that runs longer. Nothing is stored or sent if ``fn`` or an item cannot be pickled;
    code from the caller's own modules (not installed packages) travels by value, so a worker
    on another machine needs only the packages. ``workdir`` (a directory) and ``files`` ship
    with the job: each task runs in its own copy of them (see
    :mod:`cheerful.durable.files`); what a task writes to ``cf.output_dir()`` is kept
    (``job.files(i)``).
    """
    options = _options(backend, chunk_size, seed, retries, timeout, name, files, workdir)
    if not callable(fn):
        raise ConfigError(f"the first argument must be a function, not {fn!r}")
    items = as_items(items)
    if not items:
        raise ConfigError("items is empty: a job needs at least one task")
    label = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    with by_value(local_modules()):  # a worker elsewhere may not have the caller's modules
        return _submit(fn, items, "function", label, options)


def submit_script(
    path: str | os.PathLike[str],
    envs: str | os.PathLike[str] | Iterable[dict[str, Any]],
    *,
    backend: BackendLike = "local",
    chunk_size: int | None = None,
    seed: int | None = None,
    retries: int = 2,
    timeout: float | None = None,
    name: str | None = None,
    files: Sequence[str | os.PathLike[str]] = (),
    workdir: str | os.PathLike[str] | None = None,
) -> Job:
    """Run the Python script at ``path`` once per env, as a durable job.

    ``envs`` is an envs file (``.jsonl``, ``.csv``; see :mod:`cheerful.durable.envs`) or a list of
    dicts. In each task the env's names are the script's globals; the task's result is the
    script's top-level ``result`` (None if it sets none). ``workdir`` and ``files`` ship
    with the job, as for :func:`submit` (the data a script reads beside it).
    """
    options = _options(backend, chunk_size, seed, retries, timeout, name, files, workdir)
    task = script_task(path)
    envs = check_envs(envs, "script")
    return _submit(task, envs, "script", Path(path).name, options, script=task.source)


def submit_command(
    cmd: str | Sequence[str],
    envs: str | os.PathLike[str] | Iterable[dict[str, Any]],
    *,
    backend: BackendLike = "local",
    chunk_size: int | None = None,
    seed: int | None = None,
    retries: int = 2,
    timeout: float | None = None,
    name: str | None = None,
    files: Sequence[str | os.PathLike[str]] = (),
    workdir: str | os.PathLike[str] | None = None,
    output: str = "text",
) -> Job:
    """Run a program once per env, with the env added to its environment variables.

    ``cmd`` is a shell line (``"Rscript fit.R"``) or an argv list. A task's result is a
    :class:`cheerful.CommandResult` (exit code and stdout), or with ``output="json"`` the
    one JSON value the program printed; a non-zero exit code fails the task with
    :class:`cheerful.CommandFailed`, which names the program's error. The files the
    command names that exist here (``runme.R``) ship with the job, besides ``workdir`` and
    ``files``: ``job.manifest["files"]["names"]`` lists what was shipped.
    """
    options = _options(backend, chunk_size, seed, retries, timeout, name, files, workdir)
    task = command_task(cmd, output)
    envs = check_envs(envs, "command")
    named = _named_by(task.command, options.workdir)
    return _submit(task, envs, "command", task.display, options, named=named)


def auto_chunk_size(tasks: int, *, remote: bool = False, slots: int | None = None) -> int:
    """The chunk size used when none is given: about 200 chunks (100 on a backend where
    every request is paid, such as SQS + S3: about 3 requests a chunk), at most 1,000
    tasks each (100 on SQS + S3). Given the ``slots`` that will run the job, about
    :data:`CHUNKS_PER_SLOT` chunks per slot, so that none stands idle while another works
    through a long chunk."""
    chunks = AUTO_CHUNKS_REMOTE if remote else AUTO_CHUNKS
    if slots is not None:
        chunks = max(chunks, CHUNKS_PER_SLOT * slots)
    largest = MAX_AUTO_CHUNK_REMOTE if remote else MAX_AUTO_CHUNK
    return max(1, min(largest, math.ceil(tasks / chunks)))


def _options(backend, chunk_size, seed, retries, timeout, name, files, workdir) -> _Options:
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    paths = tuple(os.fspath(f) for f in files)
    where = None if workdir is None else os.fspath(workdir)
    return _Options(backend, chunk_size, seed, retries, timeout, name, paths, where)


def _named_by(command: str | Sequence[str], workdir: str | None) -> list[str]:
    """The files the command names that exist here and the workdir does not hold."""
    found = command_files(command)
    if workdir is None:
        return found
    root = Path(workdir).resolve()
    return [f for f in found if root not in Path(f).resolve().parents]


def pack_files(options: _Options, named: Sequence[str] = ()) -> Packed | None:
    """The pack of the job files ``options`` ask for (None: the job ships none)."""
    if options.workdir is None and not options.files and not named:
        return None
    return pack(options.workdir, options.files, named)


def _submit(
    fn, items: list, kind: str, label: str, options: _Options, script=None, named=()
) -> Job:
    backend = open_backend(options.backend)
    code = check_function(fn)
    items_size = check_items(items)
    packed = pack_files(options, named)
    remote = backend.queue.remote or backend.store.remote
    size = options.chunk_size or auto_chunk_size(len(items), remote=remote)
    backend.queue.max_message_bytes  # noqa: B018 - the queue must exist before the job is stored
    job_id = _new_id(backend, options.name)
    manifest = _manifest(job_id, kind, label, len(items), size, options, backend.url)
    store = backend.store
    if packed is not None:
        upload(store, packed)  # once for every job with these files
        manifest["files"] = packed.files.to_manifest()
    try:
        store.put(layout.code(job_id), code)
        if script is not None:
            store.put(layout.script(job_id), script.encode("utf-8"))
        if items_size <= ITEMS_KEPT_BYTES:  # the envs or inputs of a results table
            store.put(layout.items(job_id), dumps(items))
            manifest["items"] = layout.items(job_id)
        store.put(layout.manifest(job_id), json_bytes(manifest))
    except BaseException:
        _forget(backend, job_id)
        raise
    job = Job(job_id, backend, manifest)
    spans = [range(start, min(start + size, len(items))) for start in range(0, len(items), size)]
    send_chunks(
        backend, job_id, enumerate(spans), lambda span: items[span.start : span.stop], "submitting"
    )
    store.put(layout.submitted(job_id), json_bytes({"at": time.time(), "chunks": len(spans)}))
    return job


def _new_id(backend: Backend, name: str | None) -> str:
    for _ in range(5):
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        job_id = f"{name or 'job'}-{stamp}-{secrets.token_hex(2)}"
        if not backend.store.exists(layout.manifest(job_id)):
            return job_id
    raise JobError("could not pick a fresh job id; try again")  # pragma: no cover


def _manifest(job_id, kind, label, tasks, size, options: _Options, url: str) -> dict:
    import platform

    import cloudpickle

    from cheerful.version import __version__

    return {
        "v": layout.LAYOUT_VERSION,
        "id": job_id,
        "name": options.name,
        "kind": kind,
        "label": label,
        "created": time.time(),
        "tasks": tasks,
        "chunks": math.ceil(tasks / size),
        "chunk_size": size,
        "seed": options.seed,
        "retries": options.retries,
        "timeout": options.timeout,
        "versions": {
            "python": platform.python_version(),
            "cheerful": __version__,
            "cloudpickle": cloudpickle.__version__,
        },
        "backend": url,
        "code": layout.code(job_id),
        "submitter": {"host": platform.node(), "pid": os.getpid()},
    }


def _forget(backend: Backend, job_id: str) -> None:
    with contextlib.suppress(Exception):  # best effort: the original error matters more
        backend.store.delete_prefix(layout.job_prefix(job_id))


@dataclass(frozen=True)
class Preview:
    """What a submit would do (``--dry-run``): nothing is stored or sent."""

    kind: str
    label: str
    tasks: int
    chunk_size: int
    backend: str
    files: JobFiles | None

    def __str__(self) -> str:
        chunks = math.ceil(self.tasks / self.chunk_size)
        lines = [
            f"would submit {self.tasks} task(s) of {self.kind} {self.label!r} to {self.backend}, "
            f"in {chunks} chunk(s) of up to {self.chunk_size}",
            f"job files: {self.files.describe()}" if self.files else "job files: none",
        ]
        return "\n".join(lines)


def preview(
    kind: str,
    target: Any,
    envs: str | os.PathLike[str] | Iterable[dict[str, Any]],
    *,
    backend: str = "local",
    chunk_size: int | None = None,
    files: Sequence[str | os.PathLike[str]] = (),
    workdir: str | os.PathLike[str] | None = None,
    output: str = "text",
) -> Preview:
    """Check a script (``kind="script"``, ``target`` its path) or command (``"command"``)
    job as a submit would, and say what it would submit; store and send nothing."""
    options = _options(backend, chunk_size, None, 0, None, None, files, workdir)
    if kind == "script":
        task: Any = script_task(target)
        label, named = Path(target).name, []
    else:
        task = command_task(target, output)
        label, named = task.display, _named_by(task.command, options.workdir)
    checked = check_envs(envs, kind)
    check_function(task)
    packed = pack_files(options, named)
    remote = isinstance(backend, str) and backend.startswith("s3://")
    size = chunk_size or auto_chunk_size(len(checked), remote=remote)
    where = backend if isinstance(backend, str) else getattr(backend, "url", "?")
    return Preview(kind, label, len(checked), size, where, packed.files if packed else None)
