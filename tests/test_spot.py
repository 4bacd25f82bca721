"""The spot notice watcher against a real (fake) metadata service over HTTP on 127.0.0.1,
and a worker in this process that reacts to a notice it reads from the environment."""

from __future__ import annotations

import json
import threading
import time

import pytest

import cheerful as cf
from cheerful.durable import layout
from cheerful.durable.backends import open_backend
from cheerful.durable.worker import run_worker
from cheerful.durable.worker.spot import (
    INSTANCE_ACTION_PATH,
    METADATA_URL_ENV,
    REBALANCE_PATH,
    TOKEN_MARGIN_S,
    TOKEN_PATH,
    TOKEN_TTL_S,
    SpotNotice,
    SpotWatcher,
)
from cheerful.errors import ConfigError
from durable_helpers import wait_for
from fake_imds import FakeImds
from servers import free_port


@pytest.fixture
def imds():
    with FakeImds() as fake:
        yield fake


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watcher(imds, **options) -> SpotWatcher:
    warnings: list[str] = []
    options.setdefault("warn", warnings.append)
    w = SpotWatcher(imds.url, **options)
    w.warnings = warnings  # type: ignore[attr-defined]
    return w


# --- the watcher ------------------------------------------------------------------------


def test_no_notice_until_the_service_serves_one(imds):
    w = watcher(imds)
    assert w.check() is None and w.latest is None
    assert imds.count("PUT", TOKEN_PATH, 200) == 1
    assert imds.count("GET", INSTANCE_ACTION_PATH, 404) == 1
    assert imds.count("GET", REBALANCE_PATH, 404) == 1
    assert imds.count("GET", status=401) == 0  # every GET carried the token
    imds.interrupt("terminate", "2026-12-01T10:00:00Z")
    notice = w.check()
    assert notice == SpotNotice("interruption", "terminate", "2026-12-01T10:00:00Z")
    assert w.latest == notice and "terminate at 2026-12-01T10:00:00Z" in str(notice)
    assert w.warnings == []


def test_a_rebalance_recommendation_then_an_interruption_which_outweighs_it(imds):
    w = watcher(imds)
    imds.rebalance("2026-12-01T09:58:00Z")
    assert w.check() == SpotNotice("rebalance", None, "2026-12-01T09:58:00Z")
    imds.interrupt("stop")
    assert w.check().kind == "interruption"
    assert w.latest == SpotNotice("interruption", "stop", "2026-12-01T10:00:00Z")
    imds.action = None  # the interruption is not forgotten when the service drops it
    assert w.check().kind == "rebalance" and w.latest.kind == "interruption"


def test_a_notice_that_is_not_json_still_counts(imds):
    imds.action = b"<html>surprise</html>"
    assert watcher(imds).check() == SpotNotice("interruption", None, None)


def test_the_token_is_cached_and_fetched_again_before_it_expires(imds):
    clock = Clock()
    w = watcher(imds, clock=clock)
    for _ in range(3):
        w.check()
    assert imds.count("PUT", TOKEN_PATH) == 1
    clock.now += TOKEN_TTL_S - TOKEN_MARGIN_S - 1
    w.check()
    assert imds.count("PUT", TOKEN_PATH) == 1
    clock.now += 1
    w.check()
    assert imds.count("PUT", TOKEN_PATH) == 2
    assert imds.count("GET", status=401) == 0


def test_a_refused_token_is_replaced_once(imds):
    w = watcher(imds)
    w.check()
    imds.revoke_tokens()
    imds.interrupt()
    assert w.check().kind == "interruption"
    assert imds.count("PUT", TOKEN_PATH) == 2 and imds.count("GET", status=401) == 1
    assert w.warnings == []


def test_an_unreachable_service_means_no_notice_with_one_warning():
    w = SpotWatcher(f"http://127.0.0.1:{free_port()}", warn=(warnings := []).append)
    assert [w.check() for _ in range(3)] == [None, None, None]
    assert len(warnings) == 1 and "taken as none" in warnings[0]


def test_a_service_that_refuses_every_token_means_no_notice(imds):
    imds.refuse = True
    imds.interrupt()
    w = watcher(imds)
    assert w.check() is None and w.check() is None
    assert len(w.warnings) == 1 and "401" in w.warnings[0]
    imds.refuse = False
    assert w.check().kind == "interruption"
    imds.refuse = True
    w.check()
    assert len(w.warnings) == 2  # warned again after a poll that worked


def test_a_metadata_url_that_cannot_work_is_refused_at_once(tmp_path):
    with pytest.raises(ConfigError, match="http://169.254.169.254"):
        SpotWatcher("169.254.169.254")
    with open_backend(f"local://{tmp_path}/backend") as backend, pytest.raises(ConfigError):
        run_worker(backend, slots=1, idle_exit=0, metadata_url="ftp://x")


def test_proxy_settings_are_ignored(imds, monkeypatch):
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    imds.interrupt()
    assert watcher(imds).check().kind == "interruption"


def test_the_thread_polls_until_an_interruption_then_stops(imds):
    with watcher(imds, every=0.05) as w:
        wait_for(lambda: imds.count("GET", REBALANCE_PATH) >= 3)
        assert w.latest is None
        imds.rebalance()
        wait_for(lambda: w.latest is not None)
        assert w.latest.kind == "rebalance"
        imds.interrupt()
        wait_for(lambda: w.latest.kind == "interruption")
        wait_for(lambda: not w._thread.is_alive())
    polls = imds.count("GET", INSTANCE_ACTION_PATH)
    time.sleep(0.2)
    assert imds.count("GET", INSTANCE_ACTION_PATH) == polls


# --- a worker in this process -----------------------------------------------------------


def sleepy(seconds):
    time.sleep(seconds)
    return seconds


def interrupt_once_running(imds, url: str) -> threading.Thread:
    """Serve the notice once the worker holds the chunk (served before, the worker could
    read it before its first receive and never take the chunk at all)."""

    def serve() -> None:
        with open_backend(url) as backend:
            wait_for(lambda: backend.queue.counts().in_flight == 1, timeout=60)
        imds.interrupt()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_a_worker_reads_the_metadata_url_from_the_environment(imds, tmp_path, monkeypatch):
    monkeypatch.setenv(METADATA_URL_ENV, imds.url)
    url = f"local://{tmp_path}/backend"
    with open_backend(url) as backend:
        job = cf.submit(sleepy, [60], backend=backend)
        server = interrupt_once_running(imds, url)
        summary = run_worker(backend, slots=1, visibility=600, grace=0.5, node="spot")
        server.join(10)
        assert summary.reason == "spot interruption" and summary.released == 1
        assert backend.queue.counts().visible == 1  # released, not held for 600 s
        node = json.loads(backend.store.get(layout.node(summary.worker)))
        assert node["state"] == "interrupted"
        assert not list(backend.store.list(layout.results_prefix(job.id)))
    assert imds.served.get(INSTANCE_ACTION_PATH)


def test_no_metadata_url_means_no_polling(tmp_path, monkeypatch):
    seen: set[str] = set()

    def look() -> None:
        seen.update(t.name for t in threading.enumerate())

    for value in (None, ""):
        if value is None:
            monkeypatch.delenv(METADATA_URL_ENV, raising=False)
        else:
            monkeypatch.setenv(METADATA_URL_ENV, value)
        with open_backend(f"local://{tmp_path}/backend") as backend:
            timer = threading.Timer(0.2, look)
            timer.start()
            assert run_worker(backend, slots=1, idle_exit=0.5).reason == "idle"
            timer.join()
    assert seen and "cheerful-spot" not in seen


def test_the_watcher_reads_what_the_instance_is_once():
    with FakeImds() as imds:
        watcher = SpotWatcher(imds.url)
        assert watcher.identity == {}
        found = watcher.read_identity()
    assert found == {"id": "i-0fake0123456789", "type": "c6i.large", "zone": "us-east-1b",
                     "lifecycle": "spot"}  # fmt: skip
    assert watcher.identity == found
