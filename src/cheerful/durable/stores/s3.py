"""S3Store: the store on Amazon S3 or any S3-compatible service (SeaweedFS, MinIO, moto...).

A key lives at ``<prefix>/<key>`` in the bucket. S3 writes whole objects atomically, so
``put`` is a plain PUT; ``put_if_absent`` is a *conditional* PUT (``If-None-Match: *``):
the service refuses it with 412 when the key exists, so a duplicate delivery of a chunk can
never overwrite a stored result. Objects above :data:`MULTIPART_BYTES` go through boto3's
managed transfer (multipart, parallel parts) for ``put`` and ranged parallel reads for
``get``. ``list`` pages through ``ListObjectsV2`` and sorts (some services do not list in S3's
byte order), ``children`` lists one level with a delimiter, and
deletes go 1,000 keys per request. Every call runs in :func:`cheerful.durable.aws.aws_errors`.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

from cheerful.errors import ConfigError, ObjectNotFound, StoreError

from ..aws import AwsClients, aws_errors, error_code
from .base import MAX_KEY_BYTES, Store

__all__ = ["MULTIPART_BYTES", "S3Store"]

MULTIPART_BYTES = 64 * 1024 * 1024
"""Objects larger than this are written and read with the managed (multipart) transfer."""
MAX_SINGLE_PUT_BYTES = 5 * 1024**3
"""The largest object one PUT may write (an S3 limit), hence the largest ``put_if_absent``."""
_DELETE_BATCH = 1000
_CONFLICT_TRIES = 10  # 409: another conditional write of the key is in progress
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_CONDITION_FAILED = {"PreconditionFailed", "412"}


class S3Store(Store):
    """A store under ``prefix`` (may be "") in ``bucket``. ``client`` is a boto3 S3 client
    (used in this process only) or None to build one from ``clients`` (picklable: the
    store can go to another process)."""

    remote = True

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        clients: AwsClients | None = None,
    ) -> None:
        if not isinstance(bucket, str) or not bucket:
            raise ConfigError(f"an S3 bucket name is a non-empty str, not {bucket!r}")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.clients = clients or AwsClients()
        self._client = client

    def __repr__(self) -> str:
        return f"S3Store('s3://{self.bucket}/{self.prefix}')"

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_client": None}  # a live client cannot travel

    @property
    def client(self) -> Any:
        """The boto3 S3 client in use."""
        return self._client if self._client is not None else self.clients.client("s3")

    # Bucket management (used by `cheerful init`).

    def bucket_exists(self) -> bool:
        """Tell whether the bucket exists and can be reached with these credentials."""
        with self._errors("check the bucket"):
            try:
                self.client.head_bucket(Bucket=self.bucket)
                return True
            except Exception as exc:
                if error_code(exc) in {"404", "NoSuchBucket", "NotFound"}:
                    return False
                raise

    def create_bucket(self, region: str | None) -> bool:
        """Create the bucket in ``region``; False if it already exists and is ours."""
        options: dict[str, Any] = {}
        if region and region != "us-east-1":
            options["CreateBucketConfiguration"] = {"LocationConstraint": region}
        with self._errors("create the bucket"):
            try:
                self.client.create_bucket(Bucket=self.bucket, **options)
                return True
            except Exception as exc:
                if error_code(exc) == "BucketAlreadyOwnedByYou":
                    return False
                raise

    # The hooks.

    def _put(self, key: str, data: bytes) -> None:
        full = self._full(key)
        with self._errors("write", key):
            if len(data) > MULTIPART_BYTES:
                self.client.upload_fileobj(io.BytesIO(data), self.bucket, full, Config=_transfer())
            else:
                self.client.put_object(Bucket=self.bucket, Key=full, Body=data)

    def _put_if_absent(self, key: str, data: bytes) -> bool:
        if len(data) > MAX_SINGLE_PUT_BYTES:
            raise ConfigError(
                f"{key}: a write-once value is at most 5 GiB on S3 (one PUT), not {len(data)} bytes"
            )
        full = self._full(key)
        with self._errors("write", key):
            for attempt in range(1, _CONFLICT_TRIES + 1):
                try:
                    self.client.put_object(Bucket=self.bucket, Key=full, Body=data, IfNoneMatch="*")
                    return True
                except Exception as exc:
                    code = error_code(exc)
                    if code in _CONDITION_FAILED:
                        return False
                    if code != "ConditionalRequestConflict" or attempt == _CONFLICT_TRIES:
                        raise
                    time.sleep(0.05 * attempt)  # the other write settles, then 412
        return False  # not reached

    def _get(self, key: str) -> bytes:
        full = self._full(key)
        with self._errors("read", key):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=full)
            except Exception as exc:
                if error_code(exc) in _NOT_FOUND or self._denied_but_absent(exc, full):
                    raise ObjectNotFound(f"no value under {key!r} in {self!r}") from None
                raise
            body = response["Body"]
            if response.get("ContentLength", 0) <= MULTIPART_BYTES:
                with body:
                    return body.read()
            body.close()
            out = io.BytesIO()
            self.client.download_fileobj(self.bucket, full, out, Config=_transfer())
            return out.getvalue()

    def _exists(self, key: str) -> bool:
        with self._errors("check", key):
            try:
                self.client.head_object(Bucket=self.bucket, Key=self._full(key))
                return True
            except Exception as exc:
                if error_code(exc) in _NOT_FOUND or self._denied_but_absent(exc, self._full(key)):
                    return False
                raise

    def _denied_but_absent(self, exc: Exception, full: str) -> bool:
        """Whether a 403 on a read means "no such key": S3 answers 403, not 404, for a
        missing key to a role whose ``s3:ListBucket`` is limited to a prefix (the fleet's
        workers). Listing that one key (allowed under the prefix) tells; a real denial
        fails the listing too and is raised."""
        if error_code(exc) not in {"403", "AccessDenied"}:
            return False
        listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=full, MaxKeys=1)
        return not any(item["Key"] == full for item in listed.get("Contents", []))

    def _list(self, prefix: str) -> Iterator[str]:
        # S3 lists in UTF-8 byte order (Python's str order), but some compatible services
        # (SeaweedFS) list directory by directory: sort to keep the contract everywhere.
        keys = sorted(self._pages(self._full(prefix) + "/" if prefix else self._root()))
        if prefix and not keys and self._exists(prefix):
            keys = [prefix]
        yield from keys

    def _children(self, prefix: str) -> list[str]:
        start = self._full(prefix) + "/" if prefix else self._root()
        names: set[str] = set()
        with self._errors("list", prefix or "/"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=start, Delimiter="/"
            )
            for page in pages:
                for entry in page.get("CommonPrefixes", ()):
                    names.add(entry["Prefix"][len(start) :].rstrip("/"))
                for entry in page.get("Contents", ()):
                    names.add(entry["Key"][len(start) :])
        return [name for name in names if name]

    def _delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            with self._errors("delete", batch[0]):
                response = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": self._full(k)} for k in batch], "Quiet": True},
                )
            errors = [e for e in response.get("Errors", ()) if e.get("Code") not in _NOT_FOUND]
            if errors:
                first = errors[0]
                raise StoreError(
                    f"cannot delete {len(errors)} key(s) from {self!r}, e.g. "
                    f"{first.get('Key')}: {first.get('Code')}: {first.get('Message')}"
                )

    # Helpers.

    def _root(self) -> str:
        return self.prefix + "/" if self.prefix else ""

    def _full(self, key: str) -> str:
        full = self._root() + key
        if len(full.encode("utf-8")) > MAX_KEY_BYTES:
            raise ConfigError(
                f"store key {key[:60]!r}... is over {MAX_KEY_BYTES} bytes with the prefix "
                f"{self.prefix!r}: use a shorter backend prefix"
            )
        return full

    def _pages(self, start: str) -> Iterator[str]:
        with self._errors("list", start[len(self._root()) :] or "/"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=start
            )
            for page in pages:
                for entry in page.get("Contents", ()):
                    yield entry["Key"][len(self._root()) :]

    def _errors(self, action: str, key: str = "") -> Any:
        where = f"s3://{self.bucket}/{self._root()}{key}"
        return aws_errors(StoreError, f"{action} (s3)", where)


def _transfer() -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=MULTIPART_BYTES, multipart_chunksize=16 * 1024**2)
