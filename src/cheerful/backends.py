"""Backend URL -> a queue and a store; the only module that names concrete classes.

::

    local                   ./.cheerful in the working directory
    local:///abs/path       any directory

Under the root: ``queue.sqlite3`` (one :class:`~cheerful.queues.sqlite.SqliteQueue`
shared by every job of the backend) and ``store/`` (a
:class:`~cheerful.stores.local.LocalStore`). ``s3://bucket/prefix?region=...`` (SQS + S3)
comes in a later release. A backend's ``url`` is always the absolute form, so it means the
same from any working directory or process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from .errors import ConfigError
from .queues.base import Queue
from .stores.base import Store

__all__ = ["MAX_RECEIVES", "Backend", "open_backend"]

MAX_RECEIVES = 20
"""Receives of one message before the queue dead-letters it: the crash safety cap."""
LOCAL_DIR = ".cheerful"

_FORMS = (
    "'local' (./.cheerful here) or 'local:///absolute/path'; "
    "'s3://bucket/prefix?region=...' is coming in a later release"
)


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


def open_backend(url: str | Backend = "local") -> Backend:
    """The backend at ``url`` (see the module docstring); a :class:`Backend` is returned
    as it is. Raises :class:`~cheerful.errors.ConfigError` for a URL it cannot use."""
    if isinstance(url, Backend):
        return url
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"backend must be a URL string, {_FORMS}; not {url!r}")
    return local_backend(_local_root(url.strip()))


def local_backend(root: str | os.PathLike[str], *, max_message_bytes: int | None = None) -> Backend:
    """The embedded backend in directory ``root`` (made if missing).

    ``max_message_bytes`` lowers the queue's message limit (tests use it to force spills).
    """
    from .queues.sqlite import SqliteQueue
    from .stores.local import LocalStore

    root = Path(root).resolve()
    options = {} if max_message_bytes is None else {"max_message_bytes": max_message_bytes}
    queue = SqliteQueue(root / "queue.sqlite3", max_receives=MAX_RECEIVES, **options)
    return Backend(queue, LocalStore(root / "store"), f"local://{quote(root.as_posix())}")


def _local_root(url: str) -> Path:
    if url == "local":
        return Path.cwd() / LOCAL_DIR
    parts = urlsplit(url)
    if parts.scheme == "s3":
        raise ConfigError(
            f"backend {url!r}: S3 backends (SQS + S3) are not supported yet, they come in a "
            "later release; use 'local' or 'local:///absolute/path' for now"
        )
    if parts.scheme != "local":
        raise ConfigError(f"backend {url!r}: unknown kind; use {_FORMS}")
    if parts.netloc or not parts.path.startswith("/") or parts.query or parts.fragment:
        raise ConfigError(
            f"backend {url!r}: a local backend is 'local' or 'local:///absolute/path' "
            "(three slashes, an absolute path, no '?' options)"
        )
    return Path(unquote(parts.path))
