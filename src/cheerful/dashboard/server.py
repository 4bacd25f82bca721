"""Bind the dashboard's address and serve it with uvicorn until SIGINT or SIGTERM."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from cheerful.errors import ConfigError

__all__ = ["bind", "serve"]


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (0: any free port); a ConfigError says why
    it cannot be had."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host!r}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror}; choose another --port"
        ) from None
    return sock


def serve(app: Any, sock: socket.socket, announce: Callable[[int], None]) -> None:
    """Serve ``app`` on the bound ``sock``; ``announce(port)`` once it listens. Returns
    after SIGINT or SIGTERM (uvicorn's own handlers), once open requests are answered."""
    import uvicorn

    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,  # the token may be in an address: never written to a log
        lifespan="off",
        timeout_graceful_shutdown=5,
        server_header=False,
    )
    server = uvicorn.Server(config)
    announce(sock.getsockname()[1])
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
