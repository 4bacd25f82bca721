"""The dashboard's routes: one page, its two static files and a small JSON API.

::

    GET  /                                  the page (jobs, one job, nodes, fleet: #/...)
    GET  /static/app.js, /static/style.css  its script and style (no other file is served)
    GET  /api/overview                      every job (counts, rate, ETA, $), every node, the fleet
    GET  /api/jobs/<job>                    one job: progress, throughput samples, its nodes,
                                            latest failures (tracebacks, log links), dead chunks
    GET  /api/jobs/<job>/logs/<task>?attempt=N  what that attempt printed (text; no N: the last)
    POST /api/jobs/<job>/retry              {"confirm": "<job>"}: send failed and dead tasks again
    POST /api/jobs/<job>/cancel             {"confirm": "<job>"}: cancel the job

The page polls the API every :attr:`Source.every` seconds; the source reads the store at
most that often however many pages are open. Handlers are plain functions: Starlette runs
them in its thread pool, where the store's blocking calls belong. A bad job id, task or
attempt answers 400, an unknown job 404, an action that cannot be done 409; an error of
the backend 502 with its message, anything else 500 with no detail.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from cheerful.errors import BackendError, CheerfulError, ConfigError, JobError, JobNotFound

from .guard import Guard
from .shape import fleet_view, job_detail, job_row, node_row
from .source import Source

__all__ = ["ASSETS", "LOG_BYTES", "create_app"]

ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
"""The only files served under ``/static/``, with their types."""
LOG_BYTES = 2 * 1024 * 1024
"""A log longer than this is sent as its last this many bytes, with a line that says so."""


def create_app(
    source: Source, *, token: str | None = None, loopback: bool = True, port: int = 0
) -> Guard:
    """The ASGI app of the dashboard over ``source``, behind its :class:`~.guard.Guard`
    (``token``: required on every request when set; ``loopback``: bound to this machine
    only, so Host headers are checked; ``port``: names the token's cookie)."""
    files = resources.files("cheerful.dashboard") / "static"
    page = (files / "index.html").read_bytes()
    assets = {name: (files / name).read_bytes() for name in ASSETS}
    api = _Api(source)
    routes = [
        Route("/", lambda request: Response(page, media_type="text/html; charset=utf-8")),
        Route("/static/{name}", lambda request: _asset(assets, request.path_params["name"])),
        Route("/api/overview", api.overview),
        Route("/api/jobs/{job_id}", api.job),
        Route("/api/jobs/{job_id}/logs/{task:int}", api.log),
        Route("/api/jobs/{job_id}/retry", api.retry, methods=["POST"]),
        Route("/api/jobs/{job_id}/cancel", api.cancel, methods=["POST"]),
    ]
    handlers: dict[Any, Any] = {CheerfulError: _error, Exception: _error}
    app = Starlette(routes=routes, exception_handlers=handlers)
    return Guard(app, token=token, loopback=loopback, port=port)


class _Api:
    def __init__(self, source: Source) -> None:
        self.source = source

    def overview(self, request: Request) -> Response:
        at = self.source.refresh()
        views = self.source.jobs()
        fleet = self.source.fleet()
        spent = fleet.spent if fleet is not None else {}
        now = time.time()
        return JSONResponse(
            {
                "backend": self.source.url,
                "every": self.source.every,
                "now": now,
                "refreshed": at,
                "jobs": [job_row(v, spent.get(v.id)) for v in views],
                "nodes": [node_row(n, now) for n in self.source.nodes()],
                "fleet": fleet_view(fleet),
            }
        )

    def job(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        at = self.source.refresh()
        view = self.source.job(job_id)
        fleet = self.source.fleet()
        spent = None if fleet is None else fleet.spent.get(job_id)
        now = time.time()
        detail = job_detail(
            view, self.source.job_nodes(job_id), self.source.problems(job_id), spent, now
        )
        extra = {"backend": self.source.url, "every": self.source.every, "now": now}
        return JSONResponse({**detail, **extra, "refreshed": at})

    def log(self, request: Request) -> Response:
        text = request.query_params.get("attempt")
        if text is not None and not (text.isascii() and text.isdigit() and len(text) <= 3):
            raise ConfigError(f"attempt must be a whole number from 1 to 999, not {text!r}")
        attempt = None if text is None else int(text)
        job_id, task = request.path_params["job_id"], request.path_params["task"]
        data = self.source.log(job_id, task, attempt).encode("utf-8", errors="replace")
        if len(data) > LOG_BYTES:
            cut = f"[cheerful] the first {len(data) - LOG_BYTES} bytes are left out\n"
            data = cut.encode() + data[-LOG_BYTES:]
        return PlainTextResponse(data)

    async def retry(self, request: Request) -> Response:
        job_id = await _confirmed(request)
        sent = await _threaded(self.source.retry, job_id)
        return JSONResponse({"job": job_id, "sent": sent})

    async def cancel(self, request: Request) -> Response:
        job_id = await _confirmed(request)
        cancelled = await _threaded(self.source.cancel, job_id)
        return JSONResponse({"job": job_id, "cancelled": cancelled})


async def _confirmed(request: Request) -> str:
    """The job of an action whose body confirms it: ``{"confirm": "<the job id>"}``."""
    job_id = request.path_params["job_id"]
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("confirm") != job_id:
        raise ConfigError(f'confirm the action with the body {{"confirm": "{job_id}"}}')
    return job_id


async def _threaded(fn: Any, *args: Any) -> Any:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)


def _asset(assets: dict[str, bytes], name: str) -> Response:
    if name not in assets:
        return PlainTextResponse("Not Found\n", status_code=404)
    return Response(assets[name], media_type=ASSETS[name])


def _error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ConfigError):
        status = 400
    elif isinstance(exc, JobNotFound):
        status = 404
    elif isinstance(exc, JobError):
        status = 409
    elif isinstance(exc, BackendError):
        status = 502
    else:
        return JSONResponse({"error": "internal error (see the dashboard's output)"}, 500)
    message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return JSONResponse({"error": message}, status_code=status)
