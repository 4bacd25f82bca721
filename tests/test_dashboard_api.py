"""``cheerful dashboard``: its API over real HTTP, against a real ``cheerful dashboard``
process serving a real job run by real ``cheerful worker`` processes, on the embedded
backend and on s3:// (SQS on a moto server, S3 on SeaweedFS); the token, the host check,
the actions' rules and path tricks. The page itself in Chromium: test_dashboard_page.py.

The helpers here (:func:`dashboard`, :class:`Served`) serve the other dashboard tests.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import select
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("starlette", reason="the dashboard extra is not installed")
pytest.importorskip("uvicorn", reason="the dashboard extra is not installed")

import cheerful as cf  # noqa: E402
from cheerful.cli import main  # noqa: E402
from cheerful.durable import layout  # noqa: E402
from cheerful.durable.backends import open_backend  # noqa: E402
from cheerful.durable.messages import ChunkMessage  # noqa: E402
from durable_helpers import wait_for, worker_fleet  # noqa: E402
from servers import stop_group  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SECRET = "hunter2-do-not-show-7f3a"
CANARY = "cheerfulCanarySecretThatMustNeverShow0000"


# --- the tasks (pickled by reference: the workers import this module) -------------------


def work(item):
    """Say hello, take a little time; task 5 fails."""
    print(f"task {item['x']} says hello")
    time.sleep(0.05)
    if item["x"] == 5:
        raise ValueError("task 5 fails on purpose")
    return item["x"] * 2


def items(n: int) -> list[dict]:
    """Inputs that carry a secret the dashboard must never show."""
    return [{"x": i, "password": SECRET} for i in range(n)]


# --- a real dashboard process ------------------------------------------------------------


@dataclass
class Served:
    """A running ``cheerful dashboard``: where it listens, its token, its first line."""

    process: subprocess.Popen
    port: int
    line: str
    token: str | None
    log: Path

    def request(self, method: str, path: str, body: bytes | None = None, headers=None):
        """One raw HTTP request to 127.0.0.1 (the path is sent as it is: no
        normalization, no redirect followed); returns (status, headers, body)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            answer = connection.getresponse()
            return answer.status, dict(answer.getheaders()), answer.read()
        finally:
            connection.close()

    def get(self, path: str, **headers):
        """GET ``path`` with the token (if any) as a Bearer header."""
        if self.token is not None:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        return self.request("GET", path, headers=headers)

    def json(self, path: str):
        """GET ``path`` and decode its JSON (a non-200 answer fails the test)."""
        status, _, body = self.get(path)
        assert status == 200, (path, status, body[:500])
        return json.loads(body)

    def post(self, path: str, payload=None, **headers):
        """POST JSON ``payload`` to ``path`` (with the token, if any)."""
        headers.setdefault("Content-Type", "application/json")
        if self.token is not None:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        data = None if payload is None else json.dumps(payload).encode()
        return self.request("POST", path, body=data, headers=headers)


@contextlib.contextmanager
def dashboard(url: str, log_dir: Path, *args: str, env: dict | None = None):
    """Start ``cheerful dashboard`` on a free port; stop it (SIGTERM, then SIGKILL) on
    leaving, whatever happened."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"dashboard-{uuid.uuid4().hex[:6]}.log"
    argv = [sys.executable, "-m", "cheerful", "dashboard", "--backend", url, "--port", "0"]
    argv += ["--every", "0.5", *args]
    with open(log, "wb") as errors:
        process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=errors,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    try:
        line = _first_line(process, log)
        port = int(re.search(r":(\d+)/", line)[1])
        token = re.search(r"\?token=(\S+)", line)
        yield Served(process, port, line, token[1] if token else None, log)
    finally:
        _stop(process)


def _first_line(process: subprocess.Popen, log: Path, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            line = process.stdout.readline().decode()
            if line:
                return line
        if process.poll() is not None:
            break
    raise AssertionError(f"the dashboard did not start: {log.read_text(errors='replace')}")


def _stop(process: subprocess.Popen) -> None:
    stop_group(process, grace=15)
    process.stdout.close()


# --- backends ----------------------------------------------------------------------------


@pytest.fixture
def s3_url(new_seaweed_backend):
    """A new backend: SQS on the moto server, S3 on SeaweedFS, made by ``cheerful init``."""
    return new_seaweed_backend("team")


@pytest.fixture(params=["local", "s3"])
def url(request, tmp_path):
    """The embedded backend, then s3:// (moto + SeaweedFS)."""
    if request.param == "local":
        url = f"local://{tmp_path}/backend"
        open_backend(url).close()
        return url
    return request.getfixturevalue("s3_url")


def kill_one_chunk(url: str, job: cf.Job, reason: str, spare: int) -> int:
    """Dead-letter one chunk message of ``job`` whose tasks do not include ``spare``, as
    a worker does with a chunk it cannot run; return its chunk number."""
    with open_backend(url) as backend:
        for _ in range(50):
            taken = backend.queue.receive(10, wait_s=1.0, visibility_s=30.0)
            chunks = [ChunkMessage.decode(m.body) for m in taken]
            pick = next((i for i, c in enumerate(chunks) if spare not in c.indices), None)
            for i, message in enumerate(taken):  # hand back the others at once
                if i != pick:
                    backend.queue.release(message.receipt)
            if pick is not None:
                backend.queue.dead_letter(taken[pick].receipt, reason)
                return chunks[pick].chunk
    raise AssertionError("no chunk message of the job could be taken")


def settled(served: Served, job_id: str, **expected):
    """Wait until the job page says the job is settled with ``expected`` counts."""

    def check():
        page = served.json(f"/api/jobs/{job_id}")
        ok = page["settled"] and all(page[k] == v for k, v in expected.items())
        return page if ok else None

    return wait_for(check, timeout=240, every=0.5)


# --- the tests ---------------------------------------------------------------------------


@pytest.mark.slow
def test_the_api_follows_a_real_job_its_nodes_failures_logs_and_dead_letters(
    url, tmp_path, monkeypatch
):
    monkeypatch.setenv("CHEERFUL_TEST_CANARY", CANARY)  # in the dashboard's and the tasks' env
    job = cf.submit(work, items(30), backend=url, chunk_size=2, retries=1, name="api")
    dead_chunk = kill_one_chunk(url, job, "cannot run: the test dead-lettered it", spare=5)
    with dashboard(url, tmp_path / "logs") as served:
        options = {"slots": 1, "idle_exit": 120.0, "log_dir": tmp_path / "workers"}
        with worker_fleet(url, 2, HERE, **options) as fleet:
            page = settled(served, job.id, done=27, failed=1, dead=2)
            nodes = wait_for(lambda: _nodes_counted(served, job.id, 27), timeout=60)
            assert {n["worker"] for n in nodes} == {
                n["worker"] for n in served.json("/api/overview")["nodes"]
            }
            assert len(nodes) == 2 and all(n["state"] in ("running", "idle") for n in nodes)
            assert all(n["slots"] == 1 and n["host"] for n in nodes)

            (failure,) = page["failures"]
            assert failure["task"] == 5 and failure["type"].endswith("ValueError")
            assert failure["attempts"] == 2
            assert "task 5 fails on purpose" in failure["traceback"]
            assert "Traceback" in failure["traceback"]
            assert [link["attempt"] for link in failure["logs"]] == [1, 2]
            for link in failure["logs"]:
                status, headers, text = served.get(link["url"])
                assert status == 200 and headers["content-type"].startswith("text/plain")
                assert b"task 5 says hello" in text
            (dead,) = page["dead_chunks"]
            assert dead["chunk"] == dead_chunk and dead["tasks"] == 2
            assert "the test dead-lettered it" in dead["reason"]
            assert page["can_retry"] and not page["can_cancel"]

            listed = served.json("/api/overview")
            (row,) = [j for j in listed["jobs"] if j["id"] == job.id]
            assert (row["state"], row["done"], row["failed"], row["dead"]) == ("failed", 27, 1, 2)
            assert listed["fleet"] is None if url.startswith("local") else listed["fleet"] is not None

            # Retry failed: the same library call as `cheerful retry`; the dead chunk runs
            # again and task 5 fails again.
            status, _, body = served.post(f"/api/jobs/{job.id}/retry", {"confirm": job.id})
            assert status == 200 and json.loads(body) == {"job": job.id, "sent": 3}
            page = settled(served, job.id, done=29, failed=1, dead=0)
            assert [f["task"] for f in page["failures"]] == [5]
            assert page["failures"][0]["attempts"] == 4
            assert page["dead_chunks"] == []
            status, _, body = served.post(f"/api/jobs/{job.id}/cancel", {"confirm": job.id})
            assert status == 409 and b"nothing to cancel" in body
            assert fleet.alive()

        seen = b"".join(
            served.get(path)[2]
            for path in ("/", "/api/overview", f"/api/jobs/{job.id}", "/static/app.js")
        )
    assert SECRET.encode() not in seen and CANARY.encode() not in seen
    assert b"password" not in seen and b"AWS_SECRET_ACCESS_KEY" not in seen
    assert cf.Job.attach(job.id, url).status().done == 29


def _nodes_counted(served: Served, job_id: str, done: int):
    nodes = served.json(f"/api/jobs/{job_id}")["nodes"]
    return nodes if sum(n["job"]["done"] or 0 for n in nodes) >= done else None


def test_cancel_needs_a_json_confirmation_naming_the_job(tmp_path):
    url = f"local://{tmp_path}/backend"
    job = cf.submit(abs, range(10), backend=url, chunk_size=2)
    path = f"/api/jobs/{job.id}/cancel"
    with dashboard(url, tmp_path / "logs") as served, open_backend(url) as backend:
        refused = [
            served.post(path)[0],  # no body
            served.post(path, {"confirm": "some-other-job"})[0],
            served.post(path, {"confirm": job.id}, **{"Content-Type": "text/plain"})[0],
            served.request("POST", path, b"confirm=" + job.id.encode(),
                           {"Content-Type": "application/x-www-form-urlencoded"})[0],
            served.post(path, {"confirm": job.id}, Origin="http://evil.example")[0],
            served.post(path, {"confirm": job.id}, **{"Sec-Fetch-Site": "cross-site"})[0],
            served.request("GET", path)[0],
        ]  # fmt: skip
        assert refused == [400, 400, 415, 415, 403, 403, 405]
        assert not backend.store.exists(layout.cancelled(job.id))
        origin = f"http://127.0.0.1:{served.port}"
        status, _, body = served.post(path, {"confirm": job.id}, Origin=origin)
        assert status == 200 and json.loads(body) == {"job": job.id, "cancelled": True}
        assert backend.store.exists(layout.cancelled(job.id))
        assert json.loads(served.post(path, {"confirm": job.id})[2])["cancelled"] is False
        page = wait_for(lambda: (p := served.json(f"/api/jobs/{job.id}"))["cancelled"] and p)
        assert page["state"] == "cancelled" and not page["can_cancel"]


def test_off_loopback_every_request_needs_the_token(tmp_path):
    url = f"local://{tmp_path}/backend"
    job = cf.submit(abs, range(4), backend=url)
    with dashboard(url, tmp_path / "logs", "--host", "0.0.0.0") as served:
        token = served.token
        assert token and len(token) >= 32 and "0.0.0.0" not in served.line
        for path in ("/", "/static/app.js", "/api/overview", f"/api/jobs/{job.id}"):
            assert served.request("GET", path)[0] == 401, path
            assert served.request("GET", path, headers={"Authorization": "Bearer x"})[0] == 403
            wrong = token[:-1] + ("A" if token[-1] != "A" else "B")  # same length, one off
            assert served.request("GET", path, headers={"Authorization": f"Bearer {wrong}"})[0] == 403
            assert served.request("GET", f"{path}?token={wrong}")[0] == 403
            assert served.request("GET", path, headers={"Cookie": f"cheerful_dashboard_{served.port}={wrong}"})[0] == 403
            assert served.get(path)[0] == 200
        status, _, _ = served.request("POST", f"/api/jobs/{job.id}/cancel", json.dumps(
            {"confirm": job.id}).encode(), {"Content-Type": "application/json"})
        assert status == 401  # actions too
        status, headers, _ = served.request("GET", f"/?token={token}")
        assert status == 303 and headers["location"] == "/"  # the token leaves the address
        cookie = headers["set-cookie"]
        assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
        jar = cookie.split(";")[0]
        status, _, body = served.request("GET", "/api/overview", headers={"Cookie": jar})
        assert status == 200 and json.loads(body)["jobs"][0]["id"] == job.id
        status, headers, _ = served.request("GET", "/", headers={"Host": "evil.example"})
        assert status == 401  # off loopback, any Host: the token decides
    fixed = "a-token-given-by-the-user-0123"
    with dashboard(url, tmp_path / "logs", "--host", "0.0.0.0",
                   env={"CHEERFUL_DASHBOARD_TOKEN": fixed}) as served:  # fmt: skip
        assert fixed not in served.line and served.token is None
        assert served.request("GET", "/api/overview")[0] == 401
        ok = served.request("GET", "/api/overview", headers={"Authorization": f"Bearer {fixed}"})
        assert ok[0] == 200
    short = CliRunner().invoke(main, ["dashboard", "--backend", url, "--token", "short"])
    assert short.exit_code == 2 and "at least 16 characters" in short.output


def test_on_loopback_no_token_is_needed_but_the_host_must_be_this_machine(tmp_path):
    url = f"local://{tmp_path}/backend"
    open_backend(url).close()
    with dashboard(url, tmp_path / "logs") as served:
        assert served.token is None and f"http://127.0.0.1:{served.port}/" in served.line
        assert served.get("/api/overview")[0] == 200
        assert served.get("/", Host=f"localhost:{served.port}")[0] == 200
        for host in ("evil.example", f"evil.example:{served.port}", "10.0.0.1", ""):
            assert served.get("/api/overview", Host=host)[0] == 403, host  # DNS rebinding
        _, headers, _ = served.get("/")
        assert "script-src 'self'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"


def test_path_tricks_in_job_ids_and_log_names_are_refused(tmp_path):
    url = f"local://{tmp_path}/backend"
    job = cf.submit(work, items(4), backend=url, retries=0)
    (tmp_path / "backend" / "secret.txt").write_text("TOP SECRET beside the store")
    tricks = {
        f"/api/jobs/{job.id}/logs/..%2F..%2Fmanifest.json": 404,
        f"/api/jobs/{job.id}/logs/../../manifest.json": 404,
        f"/api/jobs/{job.id}/logs/-1": 404,
        f"/api/jobs/{job.id}/logs/0?attempt=..%2F..%2Fsecret.txt": 400,
        f"/api/jobs/{job.id}/logs/0?attempt=-1": 400,
        f"/api/jobs/{job.id}/logs/0?attempt=0": 400,
        f"/api/jobs/{job.id}/logs/0?attempt=1e3": 400,
        f"/api/jobs/{job.id}/logs/99999": 400,
        "/api/jobs/..": 400,
        "/api/jobs/%2E%2E": 400,
        "/api/jobs/%2E%2E/logs/0": 400,
        "/api/jobs/..%2F..%2Fsecret.txt": 404,
        "/api/jobs/.hidden": 400,
        "/api/jobs/a%00b": 400,
        "/api/jobs/" + "j" * 129: 400,
        "/api/jobs/no-such-job": 404,
        "/api/jobs/no-such-job/logs/0": 404,
        "/static/..%2Fapp.py": 404,
        "/static/../guard.py": 404,
        "/static/index.html": 404,
        "/static/%2e%2e%2f__init__.py": 404,
        "/../../../etc/passwd": 404,
    }
    with dashboard(url, tmp_path / "logs") as served:
        got = {path: served.get(path) for path in tricks}
        assert {p: status for p, (status, _, _) in got.items()} == tricks
        for _status, _, body in got.values():
            assert b"TOP SECRET" not in body and b"import " not in body and b"root:" not in body
        assert served.get(f"/api/jobs/{job.id}/logs/0")[0] == 200  # no attempt: the last


@pytest.mark.slow
def test_the_fleet_shows_its_instances_and_dollars(moto_server, new_s3_backend, tmp_path,
                                                   monkeypatch):  # fmt: skip
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)  # EC2 on moto, here and there
    url = new_s3_backend("fleet")
    job = cf.submit(abs, range(4), backend=url, chunk_size=2)
    launch = cf.fleet.up(url, job=job.id, count=2, types=("c6i.large",))
    assert launch.granted == 2
    with dashboard(url, tmp_path / "logs") as served:
        fleet = wait_for(lambda: (f := served.json("/api/overview")["fleet"])["asked"] and f)
        assert fleet["error"] == ""
        ids = sorted(i["id"] for i in fleet["instances"])
        assert ids == sorted(i["id"] for i in launch.instances)
        assert all(i["job"] == job.id and i["type"] == "c6i.large" for i in fleet["instances"])
        assert all(i["price"] and i["lifecycle"] == "spot" for i in fleet["instances"])
        assert fleet["spent"][job.id]["running"] == 2 and fleet["spent"][job.id]["dollars"] >= 0
        (row,) = served.json("/api/overview")["jobs"]
        assert row["instances"] == 2 and row["dollars"] is not None
        assert served.json(f"/api/jobs/{job.id}")["instances"] == 2
    cf.fleet.down(url)


@pytest.mark.slow
def test_without_ec2_the_fleet_says_why_and_the_page_goes_on(new_s3_backend, tmp_path,
                                                             monkeypatch):  # fmt: skip
    url = new_s3_backend("noec2")
    job = cf.submit(abs, range(4), backend=url, chunk_size=2)
    with open_backend(url) as backend:  # a launch record, but EC2 cannot be reached
        record = {"job": job.id, "created": time.time(), "regions": {"us-east-1": {}}}
        backend.store.put(layout.launch("l-1"), json.dumps(record).encode())
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with dashboard(url, tmp_path / "logs") as served:
        fleet = wait_for(lambda: (f := served.json("/api/overview")["fleet"])["asked"] and f,
                         timeout=120)  # fmt: skip
        assert fleet["error"] and fleet["instances"] == []
        assert served.json(f"/api/jobs/{job.id}")["id"] == job.id


def test_a_missing_backend_is_an_error_and_nothing_is_made(tmp_path):
    where = tmp_path / "nothing-here"
    done = CliRunner().invoke(main, ["dashboard", "--backend", f"local://{where}", "--port", "0"])
    assert done.exit_code == 2 and "no cheerful backend" in done.output
    assert not where.exists()
    assert "dashboard" in CliRunner().invoke(main, ["--help"]).output
