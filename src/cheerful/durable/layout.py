"""The key scheme of the store; the only place that builds or parses keys.

::

    jobs/<job>/manifest.json              spec of the job
    jobs/<job>/code.pkl                   the pickled function, once per job
    jobs/<job>/script                     or the script
    jobs/<job>/items.pkl                  every task's input, when small (tables of results)
    jobs/<job>/inputs/<ss>/<chunk>        a chunk's payload too big for a message
    jobs/<job>/submitted                  written once every chunk message of the submit is sent
    jobs/<job>/settled                    written by the first worker that finds the job settled
    jobs/<job>/results/<ss>/<chunk>       outcomes of a chunk's tasks, write-once
    jobs/<job>/results/<ss>/<chunk>.failed-<n>  empty: the record's count of failed tasks
    jobs/<job>/retries/<round>/round.json what one retry sent: chunks, tasks, attempts so far
    jobs/<job>/retries/<round>/code.pkl   the code a retry runs, when it replaced the job's
    jobs/<job>/retries/<round>/sent       written once every message of the retry is sent
    jobs/<job>/logs/<ss>/<task>.<attempt> stdout + stderr of one attempt of a task
    jobs/<job>/checkpoints/<ss>/<task>    the latest checkpoint a task saved
    jobs/<job>/outputs/<ss>/<task>.<attempt>  the files one attempt wrote to its output dir
    files/<sha256>                        job files (a packed workdir), shared by jobs
    jobs/<job>/status/<worker>.json       a worker's progress counters for the job
    nodes/<node>.json                     a node's heartbeat
    fleet/bundles/<digest>/<file>         what a cloud worker installs (wheel, requirements)
    fleet/boot/<node>.log                 a cloud worker's bootstrap log
    fleet/boot/<node>.json                what its bootstrap gave up on (a setup that failed)
    fleet/launches/<launch>.json          what one ``fleet up`` launched, where, at what price

``<chunk>`` and ``<task>`` are zero-padded to :data:`INDEX_WIDTH` (8) digits and
``<attempt>`` to :data:`ATTEMPT_WIDTH` (3), for jobs of up to 100 million tasks. A larger
index is refused.

``<ss>`` is a shard: two hex digits hashed from the number (:func:`shard`), so the objects
of a big job spread evenly over 256 prefixes. S3 serves about 3,500 writes a second per
prefix and splits a busy prefix only after minutes of throttling; a million one-task
chunks written under one prefix would hit that ceiling, spread over 256 they cannot. A
directory store gains the same way (no directory with a million entries). The shard
follows from the number, so every key is still built without a lookup; a listing comes
back in shard order, and :func:`by_number` puts keys back in numeric order. Job, worker and node ids match :data:`ID_PATTERN`: letters, digits, ``_``,
``-`` and ``.``, starting with a letter or digit, at most 128 characters. Prefixes have no
trailing '/', as ``Store.list`` takes them. Every bad id, index or key raises
:class:`~cheerful.errors.ConfigError`.

``status/<worker>.json`` lets a job's progress be estimated in O(workers) gets while it
runs: each worker rewrites its own counters. The exact counts come from one listing of
``results/``: next to each record (the authority, written first and once) its writer puts
an empty *summary* whose key carries the record's number of failed tasks, so settling a
job lists keys and reads no record, except the rare one whose writer died between the two
writes (and the next delivery of that chunk writes the missing summary).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from cheerful.errors import ConfigError

__all__ = [
    "ATTEMPT_WIDTH",
    "LAYOUT_VERSION",
    "ID_PATTERN",
    "INDEX_WIDTH",
    "by_number",
    "ROUND_WIDTH",
    "files_pack",
    "output",
    "outputs_prefix",
    "parse_results_key",
    "readable_manifest",
    "round_code",
    "round_of_key",
    "round_sent",
    "round_spec",
    "rounds_prefix",
    "settled_mark",
    "submitted",
    "summary",
    "cancelled",
    "checkpoint",
    "boot_log",
    "boot_record",
    "bundle_file",
    "checkpoints_prefix",
    "chunk_of_input_key",
    "chunk_of_result_key",
    "code",
    "input",
    "inputs_prefix",
    "items",
    "job_ids_from_keys",
    "job_prefix",
    "launch",
    "launches_prefix",
    "jobs_prefix",
    "log",
    "logs_prefix",
    "manifest",
    "node",
    "node_of_key",
    "nodes_prefix",
    "result",
    "results_prefix",
    "script",
    "shard",
    "status",
    "status_prefix",
    "task_attempt_of_log_key",
    "task_of_checkpoint_key",
    "validate_id",
    "worker_of_status_key",
]

INDEX_WIDTH = 8
"""Digits of a chunk or task number in a key."""
ATTEMPT_WIDTH = 3
"""Digits of an attempt number in a log key."""
ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"
"""What a job, worker or node id looks like."""

LAYOUT_VERSION = 3
"""The version of this key scheme, recorded in each manifest as ``v`` (1: no shards; 2: no
summaries, retries in the manifest)."""
ROUND_WIDTH = 4
"""Digits of a retry round number in a key."""

_ID = re.compile(ID_PATTERN)
_SHARD = r"([0-9a-f]{2})"
_INDEX = rf"{_SHARD}/(\d{{{INDEX_WIDTH}}})"
_JOB = rf"jobs/({ID_PATTERN})"
_RESULT_KEY = re.compile(rf"{_JOB}/results/{_INDEX}")
_SUMMARY_KEY = re.compile(rf"{_JOB}/results/{_INDEX}\.failed-(\d{{1,{INDEX_WIDTH + 1}}})")
_ROUND_KEY = re.compile(rf"{_JOB}/retries/(\d{{{ROUND_WIDTH}}})/(round\.json|code\.pkl|sent)")
_INPUT_KEY = re.compile(rf"{_JOB}/inputs/{_INDEX}")
_LOG_KEY = re.compile(rf"{_JOB}/logs/{_INDEX}\.(\d{{{ATTEMPT_WIDTH}}})")
_CHECKPOINT_KEY = re.compile(rf"{_JOB}/checkpoints/{_INDEX}")
_STATUS_KEY = re.compile(rf"{_JOB}/status/({ID_PATTERN})\.json")
_NODE_KEY = re.compile(rf"nodes/({ID_PATTERN})\.json")
_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,200}")
_ANY_JOB_KEY = re.compile(rf"{_JOB}(?:/.*)?")


def validate_id(value: str, what: str = "job id") -> str:
    """Return ``value`` if it is a valid job, worker or node id, else raise ConfigError."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ConfigError(
            f"{what} {value!r} is not valid: use 1 to 128 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    return value


def jobs_prefix() -> str:
    """The prefix under which every job lives."""
    return "jobs"


def job_prefix(job: str) -> str:
    """The prefix of everything stored for ``job``."""
    return f"jobs/{validate_id(job)}"


def manifest(job: str) -> str:
    """The key of the job's manifest (its spec)."""
    return f"{job_prefix(job)}/manifest.json"


def code(job: str) -> str:
    """The key of the job's pickled function."""
    return f"{job_prefix(job)}/code.pkl"


def items(job: str) -> str:
    """The key of the job's pickled inputs (kept when small, for tables of results)."""
    return f"{job_prefix(job)}/items.pkl"


def script(job: str) -> str:
    """The key of the job's script."""
    return f"{job_prefix(job)}/script"


def inputs_prefix(job: str) -> str:
    """The prefix of the job's spilled chunk inputs."""
    return f"{job_prefix(job)}/inputs"


def input(job: str, chunk: int) -> str:  # shadows the builtin here only: layout.input
    """The key of chunk ``chunk``'s input payload, when too big for a message."""
    return f"{inputs_prefix(job)}/{_index(chunk, 'chunk')}"


def results_prefix(job: str) -> str:
    """The prefix of the job's chunk results."""
    return f"{job_prefix(job)}/results"


def result(job: str, chunk: int) -> str:
    """The key of the outcomes of chunk ``chunk`` (write-once)."""
    return f"{results_prefix(job)}/{_index(chunk, 'chunk')}"


def summary(job: str, chunk: int, failed: int) -> str:
    """The key of the empty summary of chunk ``chunk``'s record: ``failed`` of its tasks
    failed (written after the record, by whoever wrote or read it)."""
    if isinstance(failed, bool) or not isinstance(failed, int) or failed < 0:
        raise ConfigError(f"a failed count must be an int >= 0, not {failed!r}")
    return f"{results_prefix(job)}/{_index(chunk, 'chunk')}.failed-{failed}"


def settled_mark(job: str) -> str:
    """The key a worker writes once it found the job settled (the others then read one key
    instead of listing the results; a retry removes it)."""
    return f"{job_prefix(job)}/settled"


def submitted(job: str) -> str:
    """The key written once every chunk message of the job's submit is sent."""
    return f"{job_prefix(job)}/submitted"


def rounds_prefix(job: str) -> str:
    """The prefix of the job's retry rounds."""
    return f"{job_prefix(job)}/retries"


def round_spec(job: str, number: int) -> str:
    """The key of retry round ``number``'s spec (claimed write-once: one retry per round)."""
    return f"{rounds_prefix(job)}/{_padded(number, ROUND_WIDTH, 'round number')}/round.json"


def round_code(job: str, number: int) -> str:
    """The key of the code retry round ``number`` runs, when it replaced the job's."""
    return f"{rounds_prefix(job)}/{_padded(number, ROUND_WIDTH, 'round number')}/code.pkl"


def round_sent(job: str, number: int) -> str:
    """The key written once every message of retry round ``number`` is sent."""
    return f"{rounds_prefix(job)}/{_padded(number, ROUND_WIDTH, 'round number')}/sent"


def logs_prefix(job: str) -> str:
    """The prefix of the job's task logs."""
    return f"{job_prefix(job)}/logs"


def log(job: str, task: int, attempt: int) -> str:
    """The key of the log of attempt ``attempt`` (0 to 999) of task ``task``."""
    return f"{logs_prefix(job)}/{_index(task, 'task')}.{_attempt(attempt)}"


def outputs_prefix(job: str) -> str:
    """The prefix of the job's task outputs."""
    return f"{job_prefix(job)}/outputs"


def output(job: str, task: int, attempt: int) -> str:
    """The key of the files attempt ``attempt`` of task ``task`` wrote (a ``tar.gz``,
    write-once)."""
    return f"{outputs_prefix(job)}/{_index(task, 'task')}.{_attempt(attempt)}"


def files_pack(digest: str) -> str:
    """The key of the job files whose content hash (sha256, hex) is ``digest``."""
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ConfigError(f"{digest!r} is not the sha256 of a pack of job files")
    return f"files/{digest}"


def checkpoints_prefix(job: str) -> str:
    """The prefix of the job's task checkpoints."""
    return f"{job_prefix(job)}/checkpoints"


def checkpoint(job: str, task: int) -> str:
    """The key of the latest checkpoint of task ``task``."""
    return f"{checkpoints_prefix(job)}/{_index(task, 'task')}"


def cancelled(job: str) -> str:
    """The key whose existence says the job was cancelled."""
    return f"{job_prefix(job)}/cancelled"


def status_prefix(job: str) -> str:
    """The prefix of the job's per-worker progress counters."""
    return f"{job_prefix(job)}/status"


def status(job: str, worker: str) -> str:
    """The key of ``worker``'s progress counters for ``job``."""
    return f"{status_prefix(job)}/{validate_id(worker, 'worker id')}.json"


def nodes_prefix() -> str:
    """The prefix of the node heartbeats."""
    return "nodes"


def node(node: str) -> str:
    """The key of the heartbeat of node ``node``."""
    return f"nodes/{validate_id(node, 'node id')}.json"


def bundle_file(digest: str, name: str) -> str:
    """The key of file ``name`` of the cloud worker bundle whose content hash is ``digest``."""
    if not re.fullmatch(r"[0-9a-f]{8,64}", digest) or not _FILE.fullmatch(name):
        raise ConfigError(f"bad bundle file {digest!r}/{name!r}")
    return f"fleet/bundles/{digest}/{name}"


def boot_log(node: str) -> str:
    """The key of the bootstrap log of cloud node ``node`` (an instance id)."""
    return f"fleet/boot/{validate_id(node, 'node id')}.log"


def boot_record(node: str) -> str:
    """The key of what cloud node ``node``'s bootstrap gave up on (a setup that failed)."""
    return f"fleet/boot/{validate_id(node, 'node id')}.json"


def launches_prefix() -> str:
    """The prefix of the records of ``fleet up`` launches."""
    return "fleet/launches"


def launch(launch_id: str) -> str:
    """The key of the record of launch ``launch_id``."""
    return f"{launches_prefix()}/{validate_id(launch_id, 'launch id')}.json"


def chunk_of_result_key(key: str) -> int:
    """The chunk number in a result key."""
    return _number(_parse(_RESULT_KEY, key, "result"), key, "result")


def parse_results_key(key: str) -> tuple[int, int | None]:
    """``(chunk, None)`` for a record's key, ``(chunk, failed)`` for a summary's."""
    match = _SUMMARY_KEY.fullmatch(key) if isinstance(key, str) else None
    if match is not None:
        return _number(match.groups(), key, "summary"), int(match[4])
    return chunk_of_result_key(key), None


def round_of_key(key: str) -> tuple[int, str]:
    """The round number and the file name (``round.json``, ``code.pkl``, ``sent``) of a
    key under :func:`rounds_prefix`."""
    groups = _parse(_ROUND_KEY, key, "retry round")
    return int(groups[1]), groups[2]


def chunk_of_input_key(key: str) -> int:
    """The chunk number in an input key."""
    return _number(_parse(_INPUT_KEY, key, "input"), key, "input")


def task_attempt_of_log_key(key: str) -> tuple[int, int]:
    """The task and attempt numbers in a log key."""
    groups = _parse(_LOG_KEY, key, "log")
    return _number(groups, key, "log"), int(groups[3])


def task_of_checkpoint_key(key: str) -> int:
    """The task number in a checkpoint key."""
    return _number(_parse(_CHECKPOINT_KEY, key, "checkpoint"), key, "checkpoint")


def worker_of_status_key(key: str) -> str:
    """The worker id in a status key."""
    return _parse(_STATUS_KEY, key, "status")[1]


def node_of_key(key: str) -> str:
    """The node id in a node heartbeat key."""
    return _parse(_NODE_KEY, key, "node")[0]


def job_ids_from_keys(keys: Iterable[str]) -> list[str]:
    """The sorted, distinct job ids of the job keys among ``keys`` (others are skipped)."""
    return sorted({m[1] for m in map(_ANY_JOB_KEY.fullmatch, keys) if m is not None})


def readable_manifest(job: str, manifest: dict) -> dict:
    """``manifest`` if its keys follow this scheme (``v`` is :data:`LAYOUT_VERSION`), else
    a ConfigError that says which cheerful can read the job."""
    version = manifest.get("v") if isinstance(manifest, dict) else None
    if version == LAYOUT_VERSION:
        return manifest
    made_by = (manifest.get("versions") or {}).get("cheerful", "?") if version else "?"
    raise ConfigError(
        f"job {job} was stored with store layout v{version} by cheerful {made_by}; this "
        f"cheerful reads layout v{LAYOUT_VERSION}: read or run it with cheerful {made_by}, "
        "or submit it again"
    )


def shard(number: int) -> str:
    """The two hex digits that spread the keys of chunk or task ``number``."""
    return hashlib.blake2b(b"%d" % number, digest_size=1).hexdigest()


def by_number(keys: Iterable[str]) -> list[str]:
    """Input, result, log or checkpoint keys in numeric order (then attempt order)."""
    return sorted(keys, key=lambda key: key.rsplit("/", 1)[-1])


def _index(value: int, what: str) -> str:
    """``<ss>/<number>``: the sharded, zero-padded form of a chunk or task number."""
    padded = _padded(value, INDEX_WIDTH, f"{what} number")
    return f"{shard(value)}/{padded}"


def _attempt(value: int) -> str:
    return _padded(value, ATTEMPT_WIDTH, "attempt number")


def _padded(value: int, width: int, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10**width:
        raise ConfigError(f"{what} must be an int from 0 to {10**width - 1}, not {value!r}")
    return f"{value:0{width}d}"


def _number(groups: tuple[str, ...], key: str, what: str) -> int:
    """The number of a parsed ``<ss>/<number>`` key, checked against its shard."""
    number = int(groups[2])
    if groups[1] != shard(number):
        raise ConfigError(f"{key!r} is not a {what} key of the store layout (wrong shard)")
    return number


def _parse(pattern: re.Pattern[str], key: str, what: str) -> tuple[str, ...]:
    match = pattern.fullmatch(key) if isinstance(key, str) else None
    if match is None:
        raise ConfigError(f"{key!r} is not a {what} key of the store layout")
    return match.groups()
