"""``cheerful dashboard``: a live web page of a backend's jobs, nodes and fleet.

An optional extra (``pip install 'cheerful[dashboard]'``: Starlette and uvicorn). The page
reads straight from the store and the queue through a :class:`~.source.Source`, with no
database and no process beside the workers; ``import cheerful`` never imports it.

- :mod:`.source`: what the page reads and does (the CLI wires a backend behind it).
- :mod:`.guard`: the token, the host check and the rules for the two actions.
- :mod:`.shape`: the JSON the page is sent; nothing else leaves the server.
- :mod:`.app`: the routes (an ASGI app); :mod:`.server`: binds and runs it with uvicorn.
- ``static/``: the page itself, plain HTML, CSS and JavaScript (no build step, no CDN).

This package is a front end like the CLI, but the architecture test files it with the
shared model, which imports neither way to run: so it never imports the durable side;
the CLI passes it a :class:`~.source.Source` over a backend.
"""

from __future__ import annotations

from .app import create_app
from .guard import Guard, is_loopback, new_token
from .server import bind, serve
from .source import Fleet, Problems, Source

__all__ = [
    "Fleet",
    "Guard",
    "Problems",
    "Source",
    "bind",
    "create_app",
    "is_loopback",
    "new_token",
    "serve",
]
