"""A tiny fake EC2 instance metadata service (IMDSv2) for the spot notice tests.

A real HTTP server on 127.0.0.1 (a free port) in a thread: ``PUT /latest/api/token``
hands out a token (it must carry the TTL header), every GET without a token it handed out
gets 401, the two notice paths answer 404 until :meth:`FakeImds.interrupt` or
:meth:`FakeImds.rebalance` is called. It notes every request and when a notice was first
served, so tests measure from facts, not from guesses.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["FakeImds"]

TOKEN_PATH = "/latest/api/token"
ACTION_PATH = "/latest/meta-data/spot/instance-action"
REBALANCE_PATH = "/latest/meta-data/events/recommendations/rebalance"


class FakeImds:
    """Use as a context manager; ``url`` is its base URL."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tokens: set[str] = set()
        self.revoked: set[str] = set()
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self.action: bytes | None = None
        self.recommendation: bytes | None = None
        self.served: dict[str, float] = {}  # path -> time.time() of the first 200
        self.refuse = False  # True: every GET gets 401, whatever its token
        self.counter = itertools.count(1)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeImds:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # What the test controls.

    def interrupt(self, action: str = "terminate", when: str = "2026-12-01T10:00:00Z") -> float:
        """Serve an interruption notice from now on; return when (time.time())."""
        with self.lock:
            self.action = json.dumps({"action": action, "time": when}).encode()
            return time.time()

    def rebalance(self, when: str = "2026-12-01T09:58:00Z") -> float:
        """Serve a rebalance recommendation from now on; return when (time.time())."""
        with self.lock:
            self.recommendation = json.dumps({"noticeTime": when}).encode()
            return time.time()

    def revoke_tokens(self) -> None:
        """Every token handed out so far is refused (401) from now on."""
        with self.lock:
            self.revoked |= self.tokens

    def count(self, method: str, path: str | None = None, status: int | None = None) -> int:
        with self.lock:
            return sum(
                1
                for m, p, s in self.requests
                if m == method and path in (None, p) and status in (None, s)
            )

    # Answers.

    def answer(self, method: str, path: str, headers) -> tuple[int, bytes]:
        with self.lock:
            status, body = self._answer(method, path, headers)
            self.requests.append((method, path, status))
            if status == 200 and method == "GET":
                self.served.setdefault(path, time.time())
            return status, body

    def _answer(self, method: str, path: str, headers) -> tuple[int, bytes]:
        if method == "PUT":
            if path != TOKEN_PATH:
                return 404, b""
            if not headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                return 400, b"missing TTL"
            token = f"token-{next(self.counter)}"
            self.tokens.add(token)
            return 200, token.encode()
        token = headers.get("X-aws-ec2-metadata-token")
        if self.refuse or token not in self.tokens or token in self.revoked:
            return 401, b""
        found = {ACTION_PATH: self.action, REBALANCE_PATH: self.recommendation}.get(path)
        found = found if found is not None else IDENTITY.get(path)
        return (404, b"") if found is None else (200, found)


IDENTITY = {
    "/latest/meta-data/instance-id": b"i-0fake0123456789",
    "/latest/meta-data/instance-type": b"c6i.large",
    "/latest/meta-data/placement/availability-zone": b"us-east-1b",
    "/latest/meta-data/instance-life-cycle": b"spot",
}
"""What the fake says the instance is."""


def _handler(fake: FakeImds) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._reply("GET")

        def do_PUT(self) -> None:  # noqa: N802
            self._reply("PUT")

        def _reply(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            status, body = fake.answer(method, self.path, self.headers)
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    return Handler
