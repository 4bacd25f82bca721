"""What watching costs on S3: the requests and bytes of one refresh of the dashboard,
counted on the wire by a proxy in front of a real moto server (S3 and SQS), for 10 and
then 100 nodes running a job of 1,000 chunks. A refresh costs O(nodes), nothing per
chunk: the job's exact counts (a listing of its results) are read only every 30 s.

The figures are kept as a test artifact (``dashboard-cost.json``: in tmp_path, and in
``$CHEERFUL_TEST_ARTIFACTS`` when set).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner

pytest.importorskip("starlette", reason="the dashboard extra is not installed")

import cheerful as cf  # noqa: E402
from cheerful.cli import main  # noqa: E402
from cheerful.cli.dashboard import BackendSource  # noqa: E402
from cheerful.durable import layout  # noqa: E402
from cheerful.durable.backends import open_backend  # noqa: E402
from cheerful.durable.worker.node import Usage, heartbeat  # noqa: E402
from test_dashboard_page import keep  # noqa: E402

CHUNKS = 1_000
DROPPED = {"connection", "keep-alive", "proxy-connection", "transfer-encoding"}


class CountingProxy:
    """An HTTP proxy on 127.0.0.1 that forwards every request to ``target`` and counts
    it: service, action, bytes sent and received (headers and bodies)."""

    def __init__(self, target: str) -> None:
        self.target = urlsplit(target)
        self.seen: list[dict] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def forward(self) -> None:
                proxy.forward(self)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> CountingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def forward(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in DROPPED}
        upstream = http.client.HTTPConnection(self.target.hostname, self.target.port, timeout=60)
        try:
            upstream.request(handler.command, handler.path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
            answer_headers = [(k, v) for k, v in answer.getheaders() if k.lower() not in DROPPED]
        finally:
            upstream.close()
        sent = len(str(handler.headers)) + len(handler.requestline) + len(body)
        received = sum(len(k) + len(v) + 4 for k, v in answer_headers) + len(data)
        with self.lock:  # counted before the client has its answer: no request is missed
            self.seen.append(
                {"action": _action(handler, body), "sent": sent, "received": received,
                 "path": handler.path}
            )  # fmt: skip
        handler.send_response(answer.status)
        for name, value in answer_headers:
            if name.lower() != "content-length":
                handler.send_header(name, value)
        length_out = answer.getheader("Content-Length") if handler.command == "HEAD" else None
        handler.send_header("Content-Length", length_out or str(len(data)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)

    def take(self) -> list[dict]:
        """The requests counted since the last call."""
        with self.lock:
            seen, self.seen = self.seen, []
        return seen


def _action(handler: BaseHTTPRequestHandler, body: bytes) -> str:
    target = handler.headers.get("X-Amz-Target")
    if target:
        return f"SQS {target.rsplit('.', 1)[-1]}"
    if b"Action=" in body:
        return f"SQS {parse_qs(body.decode())['Action'][0]}"
    query = parse_qs(urlsplit(handler.path).query, keep_blank_values=True)
    if handler.command == "GET" and ("list-type" in query or "prefix" in query):
        return "S3 LIST"
    return f"S3 {handler.command}"


def summary(seen: list[dict]) -> dict:
    actions: dict[str, int] = {}
    for request in seen:
        actions[request["action"]] = actions.get(request["action"], 0) + 1
    return {
        "requests": len(seen),
        "bytes_sent": sum(r["sent"] for r in seen),
        "bytes_received": sum(r["received"] for r in seen),
        "by_action": dict(sorted(actions.items())),
    }


def beat(backend, worker: str, job: str, usage: dict) -> None:
    """A node's heartbeat as a worker writes it: two chunks of ``job`` running."""
    chunks = [
        {"job": job, "chunk": c, "tasks": [c], "task_count": 1, "since": time.time(), "attempt": 1}
        for c in range(2)
    ]
    data = heartbeat(
        worker=worker, state="running", slots=2, busy=2, started=time.time() - 600,
        chunks=chunks, jobs={job: {"chunks": 30, "done": 30, "failed": 0, "running": 2}},
        usage=usage, instance={"id": "i-0123456789abcdef0", "type": "c6i.large",
                               "zone": "us-east-1a", "lifecycle": "spot"}, notice=None,
    )  # fmt: skip
    backend.store.put(layout.node(worker), json.dumps(data).encode())


@pytest.mark.slow
def test_a_refresh_costs_requests_in_proportion_to_nodes_not_chunks(moto_server, tmp_path):
    figures = {}
    with CountingProxy(moto_server.endpoint) as proxy:
        url = f"s3://c{uuid.uuid4().hex[:10]}/team?region=us-east-1&endpoint_url={proxy.url}"
        done = CliRunner().invoke(main, ["init", "--backend", url, "--create-bucket"])
        assert done.exit_code == 0, done.output
        job = cf.submit(abs, range(CHUNKS), backend=url, chunk_size=1)
        assert job.manifest["chunks"] == CHUNKS
        with open_backend(url, create=False) as backend:
            usage = Usage().read()
            source = BackendSource(backend, every=0.0)  # every call reads the store
            for nodes in (10, 100):
                for n in range(nodes):
                    beat(backend, f"ip-10-0-{n // 250}-{n % 250}-{1000 + n}", job.id, usage)
                source.overview.forget(job.id)  # its exact counts are due (every 30 s)
                proxy.take()
                source.refresh()
                exact = summary(proxy.take())
                source.refresh()
                seen = proxy.take()
                steady = summary(seen)
                figures[f"{nodes}_nodes"] = {"exact_refresh": exact, "refresh": steady}
                # One listing of the nodes, one read each, one listing of the jobs: no
                # request per chunk, none per task.
                assert steady["by_action"] == {"S3 GET": nodes, "S3 LIST": 2}, (steady, seen)
                assert exact["requests"] < nodes + 15, exact
                view = source.job(job.id)
                assert view.status.running == 2 * nodes and not view.exact
    figures["chunks"] = CHUNKS
    print(json.dumps(figures, indent=2))
    keep(tmp_path, "dashboard-cost.json", data=figures)
