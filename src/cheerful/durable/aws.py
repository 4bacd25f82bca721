"""Talking to AWS (or an SQS/S3-compatible service): boto3 clients and the one place where
botocore's errors become cheerful's.

Credentials come only from boto3's standard chain (environment, shared config and
credentials files, SSO, container and instance roles): cheerful never takes, stores or
writes a key. :class:`AwsClients` is a small picklable recipe for clients (region,
endpoints, profile); each process builds its own clients from it, lazily, because a boto3
client cannot cross a fork or a pickle.

:func:`aws_errors` is the choke point: every call the SQS queue and the S3 store make runs
inside it, and a botocore error leaves it as a :class:`~cheerful.errors.QueueError` or
:class:`~cheerful.errors.StoreError` (or :class:`~cheerful.errors.ConfigError`) whose
message says what went wrong and what to do, naming the action and the resource.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from cheerful.errors import BackendError, ConfigError

__all__ = ["NO_QUEUE_CODES", "AwsClients", "aws_errors", "error_code", "require_boto3"]

_INSTALL_HINT = "the AWS backend needs boto3: pip install 'cheerful[aws]'"

_DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "AuthorizationError",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidSecurity",
}
NO_QUEUE_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
"""The error codes SQS answers for a queue that does not exist."""
_WRONG_REGION = {
    "PermanentRedirect",
    "AuthorizationHeaderMalformed",
    "IllegalLocationConstraintException",
}


def require_boto3() -> Any:
    """Import and return boto3, or raise ConfigError saying how to install it."""
    try:
        import boto3
    except ImportError:
        raise ConfigError(_INSTALL_HINT) from None
    return boto3


@dataclass(frozen=True)
class AwsClients:
    """How to make boto3 clients: ``region``, an endpoint per service (for MinIO,
    SeaweedFS, ElasticMQ, LocalStack, moto...) and an optional named ``profile``.

    Picklable; :meth:`client` caches one client per service and process.
    """

    region: str | None = None
    s3_endpoint: str | None = None
    sqs_endpoint: str | None = None
    profile: str | None = None

    def client(self, service: str) -> Any:
        """The boto3 client of ``service`` ("s3", "sqs", ...) for this process."""
        key = (self, service, os.getpid())
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = self._new_client(service)
        return client

    def endpoint(self, service: str) -> str | None:
        """The endpoint URL configured for ``service``, or None for AWS's own."""
        return {"s3": self.s3_endpoint, "sqs": self.sqs_endpoint}.get(service)

    def _new_client(self, service: str) -> Any:
        boto3 = require_boto3()
        from botocore.config import Config

        config = Config(
            retries={"mode": "standard", "max_attempts": 6},
            connect_timeout=10,
            read_timeout=40,  # above SQS's longest long poll (20 s)
            max_pool_connections=32,
            user_agent_extra="cheerful",
            s3={"addressing_style": "path"} if self.s3_endpoint and service == "s3" else None,
        )
        with aws_errors(BackendError, f"open an {service} client", self.region or "default region"):
            session = boto3.session.Session(profile_name=self.profile)
            client = session.client(
                service,
                region_name=self.region,
                endpoint_url=self.endpoint(service),
                config=config,
            )
        if service == "s3":
            client.meta.events.register("before-send.s3", _no_expect_on_empty_body)
        return client


def _no_expect_on_empty_body(request: Any, **_: Any) -> None:
    """Drop ``Expect: 100-continue`` from a PUT with an empty body. Go servers (SeaweedFS,
    MinIO) answer such a request without the interim 100, and botocore then misreads the
    next response on the pooled connection: a stall until the read timeout and a hidden
    retry (boto/botocore#3755). S3 itself does not need the header for an empty body."""
    length = request.headers.get("Content-Length")
    if length is not None and int(length) == 0:
        request.headers.pop("Expect", None)


_lock = threading.Lock()
_clients: dict[tuple[AwsClients, str, int], Any] = {}


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError (else "")."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


@contextmanager
def aws_errors(kind: type[BackendError], action: str, resource: str) -> Iterator[None]:
    """Run AWS calls, turning a botocore error into ``kind`` (QueueError, StoreError...)
    or ConfigError with an actionable message naming ``action`` and ``resource``.

    Errors the caller handles itself (a missing key, a failed condition) must be caught
    inside the block, before they reach this choke point.
    """
    try:
        yield
    except ImportError as exc:  # botocore missing inside a partly installed boto3
        raise ConfigError(_INSTALL_HINT) from exc
    except Exception as exc:
        translated = _translate(exc, kind, action, resource)
        if translated is None:
            raise
        raise translated from exc


def _translate(
    exc: Exception, kind: type[BackendError], action: str, resource: str
) -> Exception | None:
    try:
        from botocore import exceptions as bx
    except ImportError:  # pragma: no cover - boto3 always brings botocore
        return None
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return kind(
            f"cannot {action} on {resource}: no AWS credentials found. Set AWS_PROFILE (or "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), run `aws configure` or "
            "`aws sso login`, or run on an instance with a role"
        )
    if isinstance(
        exc, (bx.SSOTokenLoadError, bx.UnauthorizedSSOTokenError, bx.TokenRetrievalError)
    ):
        return kind(f"cannot {action} on {resource}: the SSO login expired; run `aws sso login`")
    if isinstance(exc, bx.NoRegionError):
        return ConfigError(
            f"cannot {action} on {resource}: no AWS region; add '?region=eu-west-1' (say) to "
            "the backend URL or set AWS_DEFAULT_REGION"
        )
    if isinstance(exc, bx.ProfileNotFound):
        return ConfigError(f"cannot {action}: {exc}; check AWS_PROFILE or '?profile=' in the URL")
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectionClosedError)):
        return kind(f"cannot {action} on {resource}: {exc}; check the network and the endpoint")
    if isinstance(exc, (bx.ReadTimeoutError, bx.ConnectTimeoutError)):
        return kind(f"cannot {action} on {resource}: the service did not answer in time ({exc})")
    if isinstance(exc, bx.ParamValidationError):
        return ConfigError(f"cannot {action} on {resource}: {exc}")
    if not isinstance(exc, bx.ClientError):
        if isinstance(exc, bx.BotoCoreError):
            return kind(f"cannot {action} on {resource}: {exc}")
        return None
    code = error_code(exc)
    message = exc.response.get("Error", {}).get("Message") or str(exc)
    if code in _DENIED or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403:
        return kind(
            f"access denied: cannot {action} on {resource} ({code}: {message}). The "
            "credentials in use lack the permission: check their IAM policy, or "
            "`aws sts get-caller-identity` for which identity is in use"
        )
    if code in _WRONG_REGION:
        region = _bucket_region(exc)
        hint = f"use '?region={region}'" if region else "set '?region=' to the bucket's region"
        return ConfigError(f"cannot {action} on {resource}: it is in another region; {hint}")
    if code == "NoSuchBucket":
        return kind(
            f"cannot {action} on {resource}: the bucket does not exist; create it, or run "
            "`cheerful init --backend URL --create-bucket`"
        )
    if code in NO_QUEUE_CODES:
        return kind(
            f"cannot {action} on {resource}: the queue does not exist; run "
            "`cheerful init --backend URL` to create it"
        )
    return kind(f"cannot {action} on {resource}: {code or 'error'}: {message}")


def _bucket_region(exc: Exception) -> str | None:
    response = getattr(exc, "response", {}) or {}
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    return headers.get("x-amz-bucket-region") or response.get("Error", {}).get("Region")
