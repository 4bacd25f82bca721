"""Who may ask what: the token, the host check and the rules for the two actions.

:class:`Guard` wraps the whole app (pages, scripts, API: every request):

- **Bound to a loopback address** (127.0.0.0/8, ::1, ``localhost``) only this machine can
  connect, so no token is needed; but the ``Host`` header must name a loopback host too,
  else a web page elsewhere could read the dashboard through a DNS name it points at
  127.0.0.1 (DNS rebinding).
- **Bound to any other address** a token is required on every request, compared in
  constant time (:func:`hmac.compare_digest`): ``Authorization: Bearer <token>``, the
  cookie the dashboard sets, or ``?token=<token>`` in the address (the link printed at
  start). A valid ``?token=`` sets the cookie (``HttpOnly``, ``SameSite=Strict``) and
  redirects to the same page without it, so the token leaves the address bar and the
  history. No token: 401; a wrong one: 403. A token given on loopback is checked too.
- **Actions** (the only POSTs: retry failed, cancel job) must be JSON requests, and a
  browser's ``Origin`` (when sent) must be this server's: a form on another site cannot
  post one (CSRF), even on loopback where no token is asked.

Every answer carries a strict Content-Security-Policy (scripts and styles from this
server only), ``nosniff``, ``no-referrer`` (the token never leaks in a Referer) and
``no-store``.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

__all__ = ["MIN_TOKEN", "SECURITY_HEADERS", "Guard", "is_loopback", "new_token"]

MIN_TOKEN = 16
"""The fewest characters a given token may have."""
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}
"""Headers added to every answer."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

NO_TOKEN = (
    "This dashboard needs its token: open the address `cheerful dashboard` printed (it "
    "ends with ?token=...), or send 'Authorization: Bearer <token>'.\n"
)


def new_token() -> str:
    """A fresh random token (32 URL-safe characters, 192 bits)."""
    return secrets.token_urlsafe(24)


def is_loopback(host: str) -> bool:
    """True if ``host`` (a name or an address, IPv6 with or without brackets) is this
    machine's loopback."""
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Guard:
    """ASGI middleware that refuses what the module docstring says, and adds
    :data:`SECURITY_HEADERS` to every answer."""

    def __init__(self, app: App, *, token: str | None, loopback: bool, port: int) -> None:
        self.app, self.token, self.loopback = app, token, loopback
        self.cookie = f"cheerful_dashboard_{port}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a refusal or the token's redirect, else pass the request on."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        answer = self.refusal(request)
        if answer is None and self.token and "token" in request.query_params:
            answer = self._welcome(request)
        if answer is not None:
            await answer(scope, receive, _secured(send))
            return
        await self.app(scope, receive, _secured(send))

    def refusal(self, request: Request) -> Response | None:
        """Why ``request`` is refused (the answer to send), or None if it may go on."""
        host = request.headers.get("host", "")
        if self.loopback and not is_loopback(_hostname(host)):
            return _refuse(403, f"Host {host!r} is not this machine's loopback name.\n")
        if self.token is not None:
            given = self._given(request)
            if given is None:
                return _refuse(401, NO_TOKEN)
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return _refuse(403, "Wrong token.\n")
        if request.method == "POST":
            return _action_refusal(request, host)
        return None

    def _given(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return header[7:].strip()
        return request.query_params.get("token") or request.cookies.get(self.cookie)

    def _welcome(self, request: Request) -> Response:
        """Keep the (valid) token in a cookie and show the page without it."""
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
        target = URL(path=request.url.path).include_query_params(**dict(query))
        answer = RedirectResponse(str(target), status_code=303)
        answer.set_cookie(
            self.cookie, self.token or "", httponly=True, samesite="strict", path="/"
        )
        return answer


def _action_refusal(request: Request, host: str) -> Response | None:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        return _refuse(415, "Actions are JSON requests (Content-Type: application/json).\n")
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{host}":
        return _refuse(403, f"An action from {origin!r} is refused: not this dashboard.\n")
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return _refuse(403, "An action from another site is refused.\n")
    return None


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _refuse(status: int, text: str) -> Response:
    return PlainTextResponse(text, status_code=status)


def _secured(send: Send) -> Send:
    async def secured(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            present = {name.lower() for name, _ in headers}
            for name, value in SECURITY_HEADERS.items():
                if name.encode() not in present:
                    headers.append((name.encode(), value.encode()))
            message["headers"] = headers
        await send(message)

    return secured
