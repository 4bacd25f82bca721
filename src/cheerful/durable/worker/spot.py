"""EC2 spot notices: poll the instance metadata service (IMDSv2) for the two-minute
interruption notice and for rebalance recommendations.

A :class:`SpotWatcher` asks ``{base}/latest/meta-data/spot/instance-action`` (404: nothing
planned; 200 ``{"action": "terminate", "time": "..."}``: the instance goes soon) and
``{base}/latest/meta-data/events/recommendations/rebalance`` (404: none; 200
``{"noticeTime": "..."}``: the instance is at raised risk of interruption). Each GET carries
an IMDSv2 session token got with a ``PUT {base}/latest/api/token``, cached and fetched again
before it expires or when a GET answers 401.

The stdlib only, short timeouts, no proxies. A network error, an odd answer or a missing
service all mean "no notice" (with one warning until a poll works again): a worker is never
stopped or slowed by the metadata service. :meth:`SpotWatcher.check` polls once (tests
drive it with an injected ``clock`` and ``opener``); :meth:`SpotWatcher.start` polls every
:data:`SPOT_POLL_S` seconds in a daemon thread, and the worker's loop reads
:attr:`SpotWatcher.latest` on each of its turns.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cheerful.errors import ConfigError

__all__ = [
    "EC2_METADATA_URL",
    "METADATA_URL_ENV",
    "SPOT_POLL_S",
    "SpotNotice",
    "SpotWatcher",
]

EC2_METADATA_URL = "http://169.254.169.254"
"""The instance metadata service of an EC2 instance."""
METADATA_URL_ENV = "CHEERFUL_METADATA_URL"
"""Environment variable read by ``run_worker`` when ``metadata_url`` is not given."""
SPOT_POLL_S = 5.0
"""Seconds between two polls: AWS's own advice, a small part of the two-minute notice."""
TIMEOUT_S = 1.0
"""Longest wait for one answer of the metadata service (it answers in milliseconds)."""
TOKEN_TTL_S = 21600
"""Lifetime asked for an IMDSv2 token (6 h, the most allowed)."""
TOKEN_MARGIN_S = 300.0
"""A token is fetched again this long before it expires."""

TOKEN_PATH = "/latest/api/token"
INSTANCE_ACTION_PATH = "/latest/meta-data/spot/instance-action"
REBALANCE_PATH = "/latest/meta-data/events/recommendations/rebalance"
IDENTITY_PATHS = {
    "id": "/latest/meta-data/instance-id",
    "type": "/latest/meta-data/instance-type",
    "zone": "/latest/meta-data/placement/availability-zone",
    "lifecycle": "/latest/meta-data/instance-life-cycle",
}
"""What a worker reads once about its instance (its heartbeat shows it)."""


@dataclass(frozen=True)
class SpotNotice:
    """What the metadata service announced.

    ``kind`` is "interruption" (the instance is stopped, hibernated or terminated at
    ``time``: ``action`` says which) or "rebalance" (a recommendation: ``action`` is None,
    ``time`` when it was made). ``time`` is the service's ISO 8601 text, None if absent.
    """

    kind: str
    action: str | None = None
    time: str | None = None

    def __str__(self) -> str:
        if self.kind == "interruption":
            return f"spot interruption notice ({self.action or 'unknown action'} at {self.time})"
        return f"rebalance recommendation (made at {self.time})"


class SpotWatcher:
    """Polls the metadata service at ``base_url`` (e.g. :data:`EC2_METADATA_URL`).

    ``opener`` has urllib's ``open(request, timeout=)`` (default: one that ignores proxy
    settings); ``clock`` gives monotonic seconds (token lifetime); ``warn`` takes a message
    (default: a line on stderr). A URL that is not ``http://`` or ``https://`` raises
    :class:`~cheerful.errors.ConfigError` at once (it could never work).
    """

    def __init__(
        self,
        base_url: str,
        *,
        every: float = SPOT_POLL_S,
        timeout: float = TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
        opener: Any = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"the metadata URL must start with http:// or https:// "
                f"(on EC2: {EC2_METADATA_URL}), not {base_url!r}"
            )
        self.base = base_url.rstrip("/")
        self.every, self.timeout, self.clock = every, timeout, clock
        if opener is None:  # http and urllib load here: only a worker on EC2 makes one
            import urllib.request

            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.opener = opener
        self.warn = warn or _warn
        self._token: str | None = None
        self._token_due = 0.0
        self._warned = False
        self._latest: SpotNotice | None = None
        self._identity: dict[str, str] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def identity(self) -> dict[str, str]:
        """What the instance is (``id``, ``type``, ``zone``, ``lifecycle``: spot or
        on-demand), read once when polling starts ({} until then, or off EC2)."""
        with self._lock:
            return dict(self._identity)

    def read_identity(self) -> dict[str, str]:
        """Ask the metadata service what this instance is (an error: what is known)."""
        import http.client

        found = {}
        for name, path in IDENTITY_PATHS.items():
            try:
                body = self._get(path)
            except (OSError, http.client.HTTPException, ValueError):
                break
            if body is not None:
                found[name] = body.decode("utf-8", "replace").strip()
        if found.get("lifecycle") == "normal":
            found["lifecycle"] = "on-demand"
        with self._lock:
            self._identity = found
        return found

    @property
    def latest(self) -> SpotNotice | None:
        """The weightiest notice seen so far (an interruption outweighs a rebalance)."""
        with self._lock:
            return self._latest

    def check(self) -> SpotNotice | None:
        """Poll once: the notice in force now, or None (none, or the service failed)."""
        import http.client

        try:
            notice = self._poll()
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if not self._warned:
                self._warned = True
                self.warn(
                    f"cannot read spot notices from {self.base} (taken as none; said once): "
                    f"{_describe(exc)}"
                )
            return None
        self._warned = False
        if notice is not None:
            with self._lock:
                if self._latest is None or self._latest.kind != "interruption":
                    self._latest = notice
        return notice

    def start(self) -> SpotWatcher:
        """Poll now, then every ``every`` seconds in a daemon thread, until :meth:`close`
        or an interruption notice (there is nothing to wait for after that)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="cheerful-spot", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop polling (a poll under way ends within ``timeout``; nobody waits for it)."""
        self._closed.set()

    def __enter__(self) -> SpotWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Polling.

    def _watch(self) -> None:
        self.read_identity()
        while not self._closed.is_set():
            notice = self.check()
            if notice is not None and notice.kind == "interruption":
                return
            self._closed.wait(self.every)

    def _poll(self) -> SpotNotice | None:
        found = self._get(INSTANCE_ACTION_PATH)
        if found is not None:
            data = _json(found)
            return SpotNotice("interruption", _text(data.get("action")), _text(data.get("time")))
        found = self._get(REBALANCE_PATH)
        if found is not None:
            return SpotNotice("rebalance", None, _text(_json(found).get("noticeTime")))
        return None

    def _get(self, path: str) -> bytes | None:
        """The body of ``path``, or None when it is not there (404)."""
        import urllib.error
        import urllib.request

        for fresh in (False, True):
            request = urllib.request.Request(self.base + path, method="GET")
            request.add_header("X-aws-ec2-metadata-token", self._session(fresh))
            try:
                with self.opener.open(request, timeout=self.timeout) as answer:
                    return answer.read()
            except urllib.error.HTTPError as exc:
                exc.close()
                if exc.code == 404:
                    return None
                if exc.code != 401 or fresh:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _session(self, fresh: bool) -> str:
        """The cached token, or a new one if asked, none yet or close to expiry."""
        import urllib.request

        now = self.clock()
        if fresh or self._token is None or now >= self._token_due:
            request = urllib.request.Request(self.base + TOKEN_PATH, method="PUT")
            request.add_header("X-aws-ec2-metadata-token-ttl-seconds", str(TOKEN_TTL_S))
            with self.opener.open(request, timeout=self.timeout) as answer:
                token = answer.read().decode("ascii").strip()
            if not token:
                raise ValueError("the metadata service gave an empty token")
            self._token, self._token_due = token, now + TOKEN_TTL_S - TOKEN_MARGIN_S
        return self._token


def _json(body: bytes) -> dict:
    """The JSON object of a notice; {} if it is not one (the notice still counts)."""
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _describe(exc: BaseException) -> str:
    import urllib.error

    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} for {exc.url}"
    reason = getattr(exc, "reason", None)
    return f"{type(exc).__name__}: {reason or exc}"


def _warn(message: str) -> None:
    print(f"cheerful worker: {message}", file=sys.stderr, flush=True)
