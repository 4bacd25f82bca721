"""Backend URL -> a queue and a store; the only module that names concrete classes.

::

    local                                   ./.cheerful in the working directory
    local:///abs/path                       any directory
    s3://bucket/prefix?region=eu-west-1     SQS + S3 (or any SQS/S3-compatible service)

A local backend keeps ``queue.sqlite3`` (one :class:`~cheerful.durable.queues.sqlite.SqliteQueue`
shared by every job of the backend) and ``store/`` (a
:class:`~cheerful.durable.stores.local.LocalStore`) under its root.

An S3 backend keeps its objects under ``prefix`` in ``bucket``
(:class:`~cheerful.durable.stores.s3.S3Store`) and its messages in SQS queues named after the
prefix (:class:`~cheerful.durable.queues.sqs.SqsQueue`; ``queue=NAME`` names them). Options:
``region``, ``queue``, ``endpoint_url`` (one endpoint for both services, for MinIO,
SeaweedFS, LocalStack, moto...), or ``s3_endpoint`` and ``sqs_endpoint``, and ``profile``
(a named AWS profile). Credentials come from boto3's standard chain, never from the URL.
``cheerful init --backend URL`` creates the queues (and the bucket, if asked).

A backend's ``url`` is always the canonical form (absolute path; options sorted, the
queue name spelled out), so it means the same from any working directory or process.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from cheerful.errors import ConfigError

from .queues.base import Queue
from .stores.base import Store, validate_prefix

__all__ = [
    "MAX_RECEIVES",
    "Backend",
    "S3Location",
    "init_backend",
    "open_backend",
    "parse_s3_url",
]

MAX_RECEIVES = 20
"""Receives of one message before the queue dead-letters it: the crash safety cap."""
LOCAL_DIR = ".cheerful"
QUEUE_FILE = "queue.sqlite3"
STORE_DIR = "store"

_FORMS = (
    "'local' (./.cheerful here), 'local:///absolute/path' or "
    "'s3://bucket/prefix?region=eu-west-1' (SQS + S3)"
)
_S3_OPTIONS = ("region", "queue", "endpoint_url", "s3_endpoint", "sqs_endpoint", "profile")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class Backend:
    """Where durable jobs live: a ``queue`` of chunk messages and a ``store`` of objects."""

    queue: Queue
    store: Store
    url: str

    def close(self) -> None:
        """Release the queue's and the store's connections."""
        self.queue.close()
        self.store.close()

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_backend(url: str | Backend = "local", *, create: bool = True) -> Backend:
    """The backend at ``url`` (see the module docstring); a :class:`Backend` is returned
    as it is. Raises :class:`~cheerful.errors.ConfigError` for a URL it cannot use.

    A local backend's directory, queue file and store are made if missing, unless
    ``create`` is False (for commands that only read): then they must be there, else a
    ConfigError names the path. An ``s3://`` backend makes nothing on opening either way
    (its queues and bucket come from ``cheerful init``).
    """
    if isinstance(url, Backend):
        return url
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"backend must be a URL string, {_FORMS}; not {url!r}")
    url = url.strip()
    if url.startswith("s3://"):
        return s3_backend(url)
    return local_backend(_local_root(url), create=create)


@dataclass(frozen=True)
class S3Location:
    """The parts of an ``s3://`` backend URL."""

    bucket: str
    prefix: str
    queue: str
    region: str | None
    s3_endpoint: str | None
    sqs_endpoint: str | None
    profile: str | None

    @property
    def url(self) -> str:
        """The canonical URL."""
        options = {"region": self.region, "queue": self.queue, "profile": self.profile}
        if self.s3_endpoint and self.s3_endpoint == self.sqs_endpoint:
            options["endpoint_url"] = self.s3_endpoint
        else:
            options.update(s3_endpoint=self.s3_endpoint, sqs_endpoint=self.sqs_endpoint)
        query = urlencode(sorted((k, v) for k, v in options.items() if v))
        return f"s3://{self.bucket}/{quote(self.prefix)}?{query}"


def parse_s3_url(url: str) -> S3Location:
    """Split an ``s3://bucket/prefix?option=...`` URL, checking every part."""
    parts = urlsplit(url)
    bucket, prefix = parts.netloc, unquote(parts.path).strip("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ConfigError(
            f"backend {url!r}: {bucket!r} is not a valid S3 bucket name (3 to 63 lowercase "
            "letters, digits, '-' or '.'); the form is 's3://bucket/prefix?region=eu-west-1'"
        )
    if prefix:
        validate_prefix(prefix)
    if parts.fragment:
        raise ConfigError(f"backend {url!r}: drop the '#{parts.fragment}'")
    options: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if name not in _S3_OPTIONS:
            raise ConfigError(
                f"backend {url!r}: unknown option {name!r}; the options are "
                + ", ".join(_S3_OPTIONS)
            )
        if not value:
            raise ConfigError(f"backend {url!r}: option {name!r} needs a value")
        options[name] = value
    if "endpoint_url" in options and ({"s3_endpoint", "sqs_endpoint"} & options.keys()):
        raise ConfigError(
            f"backend {url!r}: give either endpoint_url (both services) or s3_endpoint and "
            "sqs_endpoint, not both"
        )
    for name in ("endpoint_url", "s3_endpoint", "sqs_endpoint"):
        if name in options and urlsplit(options[name]).scheme not in ("http", "https"):
            raise ConfigError(f"backend {url!r}: {name} must be an http:// or https:// URL")
    from .queues.sqs import valid_queue_name

    queue = (
        valid_queue_name(options["queue"]) if "queue" in options else _queue_name(bucket, prefix)
    )
    endpoint = options.get("endpoint_url")
    return S3Location(
        bucket=bucket,
        prefix=prefix,
        queue=queue,
        region=options.get("region"),
        s3_endpoint=options.get("s3_endpoint", endpoint),
        sqs_endpoint=options.get("sqs_endpoint", endpoint),
        profile=options.get("profile"),
    )


def s3_backend(url: str) -> Backend:
    """The SQS + S3 backend of an ``s3://`` URL (no request is made until it is used)."""
    from .aws import AwsClients, require_boto3
    from .queues.sqs import SqsQueue
    from .stores.s3 import S3Store

    require_boto3()
    where = parse_s3_url(url)
    clients = AwsClients(where.region, where.s3_endpoint, where.sqs_endpoint, where.profile)
    queue = SqsQueue(where.queue, clients=clients, max_receives=MAX_RECEIVES)
    return Backend(queue, S3Store(where.bucket, where.prefix, clients=clients), where.url)


def _queue_name(bucket: str, prefix: str) -> str:
    """A queue name from the prefix (or the bucket): SQS allows letters, digits, '-', '_'."""
    name = re.sub(r"[^A-Za-z0-9_]+", "-", prefix or bucket).strip("-") or "cheerful"
    if len(name) > 40:
        digest = hashlib.sha256((prefix or bucket).encode()).hexdigest()[:8]
        name = f"{name[:31].rstrip('-')}-{digest}"
    return name


def local_backend(
    root: str | os.PathLike[str], *, max_message_bytes: int | None = None, create: bool = True
) -> Backend:
    """The embedded backend in directory ``root``, made if missing; with ``create=False``
    it must be there (a ConfigError naming ``root`` if not) and nothing is made.

    ``max_message_bytes`` lowers the queue's message limit (tests use it to force spills).
    """
    from .queues.sqlite import SqliteQueue
    from .stores.local import LocalStore

    root = Path(root).resolve()
    if not create:
        _require_local(root)
    options = {} if max_message_bytes is None else {"max_message_bytes": max_message_bytes}
    queue = SqliteQueue(root / QUEUE_FILE, max_receives=MAX_RECEIVES, **options)
    store = LocalStore(root / STORE_DIR, create=create)
    return Backend(queue, store, f"local://{quote(root.as_posix())}")


def _require_local(root: Path) -> None:
    """Raise a ConfigError unless ``root`` holds a local backend's queue file and store
    (checked before opening them: the queue would make its file)."""
    missing = [
        name
        for name, there in (
            (QUEUE_FILE, (root / QUEUE_FILE).is_file()),
            (f"{STORE_DIR}/", (root / STORE_DIR).is_dir()),
        )
        if not there
    ]
    if missing:
        raise ConfigError(
            f"no cheerful backend at {root} (no {' or '.join(missing)} there): "
            "pass --backend, or run a job first"
        )


def _local_root(url: str) -> Path:
    if url == "local":
        return Path.cwd() / LOCAL_DIR
    parts = urlsplit(url)
    if parts.scheme != "local":
        raise ConfigError(f"backend {url!r}: unknown kind; use {_FORMS}")
    if parts.netloc or not parts.path.startswith("/") or parts.query or parts.fragment:
        raise ConfigError(
            f"backend {url!r}: a local backend is 'local' or 'local:///absolute/path' "
            "(three slashes, an absolute path, no '?' options)"
        )
    return Path(unquote(parts.path))


def init_backend(url: str, *, create_bucket: bool = False) -> list[str]:
    """Create what the backend at ``url`` needs and is missing; return one line per thing
    created (nothing when everything exists: running it twice changes nothing).

    Local: the directory, the queue file and the store. S3: the bucket (only with
    ``create_bucket``; else it must exist), the SQS queue and its dead-letter queue with
    the redrive policy.
    """
    if isinstance(url, str) and url.strip().startswith("s3://"):
        return _init_s3(url.strip(), create_bucket)
    root = _local_root(url.strip()) if isinstance(url, str) else None
    existed = root is not None and (root / QUEUE_FILE).exists()
    with open_backend(url) as backend:
        backend.queue.counts()  # creates the queue file
        return [] if existed else [f"created the local backend {backend.url}"]


def _init_s3(url: str, create_bucket: bool) -> list[str]:
    from .queues.sqs import SqsQueue
    from .stores.s3 import S3Store

    backend = s3_backend(url)
    store, queue = backend.store, backend.queue
    assert isinstance(store, S3Store) and isinstance(queue, SqsQueue)
    created = []
    if not store.bucket_exists():
        if not create_bucket:
            raise ConfigError(
                f"bucket {store.bucket} does not exist (or is not yours); create it, or add "
                "--create-bucket"
            )
        if store.create_bucket(queue.clients.region):
            created.append(f"created bucket s3://{store.bucket}")
    for name in queue.create():
        kind = "dead-letter queue" if name.endswith("--dead") else "queue"
        created.append(f"created SQS {kind} {name}")
    return created
