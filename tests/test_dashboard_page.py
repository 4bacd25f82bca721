"""The dashboard's page in a real headless Chromium (Debian's, driven by Selenium through
Debian's chromedriver), over a real ``cheerful dashboard`` process and real workers: a
running job's progress moves, a failure's traceback and log show, a worker killed with
SIGKILL turns "lost", cancel asks before acting.

The figures (page load, time from a kill to "lost") and a screenshot are kept as test
artifacts: in the test's tmp_path, and in ``$CHEERFUL_TEST_ARTIFACTS`` when it is set.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the dashboard extra is not installed")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")

import cheerful as cf  # noqa: E402
from cheerful.durable import layout  # noqa: E402
from cheerful.durable.backends import open_backend  # noqa: E402
from durable_helpers import wait_for, worker_fleet  # noqa: E402
from test_dashboard_api import HERE, dashboard  # noqa: E402

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
QUIET = [  # no network noise: nothing outside this machine is asked anything
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-sync",
    "--metrics-recording-only",
    "--no-first-run",
    "--no-default-browser-check",
]


def slow(x):
    """A task that takes a while and says so; task 7 fails."""
    print(f"slow task {x} starts", flush=True)
    time.sleep(0.4)
    if x == 7:
        raise ValueError("task 7 fails on purpose")
    return x


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium, quit whatever happens."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("Chromium is not installed (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1100", f"--user-data-dir={tmp_path / 'chromium'}", *QUIET):
        options.add_argument(arg)  # fmt: skip
    service = Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()


def js(driver, script: str):
    """Evaluate ``script`` (an expression) in the page."""
    return driver.execute_script(f"return {script};")


def keep(tmp_path: Path, name: str, source: Path | None = None, data: dict | None = None) -> Path:
    """Keep an artifact in tmp_path and, when set, in $CHEERFUL_TEST_ARTIFACTS."""
    path = tmp_path / name
    if data is not None:
        path.write_text(json.dumps(data, indent=2))
    elif source is not None and source != path:
        shutil.copy(source, path)
    where = os.environ.get("CHEERFUL_TEST_ARTIFACTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(where) / name)
    print(f"artifact: {path}")
    return path


def open_job(driver, served, job_id: str) -> dict:
    """Open the job's page, wait for its first data; return the page load figures (ms)."""
    driver.get(f"http://127.0.0.1:{served.port}/#/jobs/{job_id}")
    wait_for(lambda: js(driver, "document.body.dataset.loaded"), timeout=30)
    wait_for(lambda: js(driver, "document.getElementById('progress') !== null"), timeout=30)
    timing = js(driver, "performance.getEntriesByType('navigation')[0].toJSON()")
    return {
        "dom_content_loaded_ms": round(timing["domContentLoadedEventEnd"], 1),
        "load_event_ms": round(timing["loadEventEnd"], 1),
        "first_data_ms": round(float(js(driver, "document.body.dataset.loaded")), 1),
        "transferred_bytes": timing.get("transferSize"),
    }


def done_shown(driver) -> int:
    """The tasks done that the progress bar shows now."""
    return int(js(driver, "document.getElementById('progress').dataset.done"))


@pytest.mark.slow
def test_a_running_job_moves_its_failure_shows_and_a_killed_worker_turns_lost(tmp_path, browser):
    url = f"local://{tmp_path}/backend"
    job = cf.submit(slow, range(80), backend=url, chunk_size=2, retries=0, name="page")
    options = {"slots": 1, "idle_exit": 120.0, "log_dir": tmp_path / "workers"}
    with dashboard(url, tmp_path / "logs") as served, worker_fleet(url, 2, HERE, **options):
        figures = open_job(browser, served, job.id)
        first = done_shown(browser)
        wait_for(lambda: done_shown(browser) > first, timeout=60)  # it moves, no reload
        assert js(browser, "performance.getEntriesByType('navigation').length") == 1

        failure = "document.querySelector('details.failure[data-task=\"7\"]')"
        wait_for(lambda: js(browser, f"{failure} !== null"), timeout=120)
        browser.execute_script(f"{failure}.querySelector('summary').click();")
        traceback = js(browser, f"{failure}.querySelector('pre.traceback').innerText")
        assert "ValueError" in traceback and "task 7 fails on purpose" in traceback
        assert js(browser, f"{failure}.open")
        browser.execute_script(f"{failure}.querySelector('a.log').click();")
        log = "document.getElementById('log-text').textContent"
        wait_for(lambda: "slow task 7 starts" in js(browser, log), timeout=30)
        browser.execute_script("document.getElementById('log-close').click();")

        victim = wait_for(lambda: _running_node(served, job.id), timeout=60)
        pid = int(victim.rsplit("-", 1)[1])
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        row = f"document.querySelector('tr[data-node=\"{victim}\"]')"
        wait_for(lambda: js(browser, f"{row} && {row}.dataset.state") == "lost", timeout=180)
        figures["kill_to_lost_s"] = round(time.monotonic() - killed, 1)
        assert js(browser, f"{failure}.open")  # redraws keep what the user opened
        shot = tmp_path / "dashboard-job.png"
        browser.save_screenshot(str(shot))
    keep(tmp_path, "dashboard-job.png", shot)
    keep(tmp_path, "dashboard-figures.json", data=figures)
    print(f"figures: {figures}")


def _running_node(served, job_id: str) -> str | None:
    nodes = served.json(f"/api/jobs/{job_id}")["nodes"]
    busy = [n["worker"] for n in nodes if n["state"] == "running" and n["job"]["done"]]
    return busy[0] if busy else None


def test_cancel_asks_before_acting(tmp_path, browser):
    url = f"local://{tmp_path}/backend"
    job = cf.submit(abs, range(10), backend=url, chunk_size=2)  # no worker: it waits
    marker = layout.cancelled(job.id)
    with dashboard(url, tmp_path / "logs") as served, open_backend(url) as backend:
        open_job(browser, served, job.id)
        dialog = "document.getElementById('confirm')"
        wait_for(lambda: js(browser, "!document.getElementById('cancel').disabled"), timeout=30)
        browser.find_element("id", "cancel").click()
        assert js(browser, f"{dialog}.open")
        assert job.id in js(browser, "document.getElementById('confirm-title').textContent")
        browser.find_element("id", "confirm-no").click()
        assert not js(browser, f"{dialog}.open")
        read = js(browser, "document.getElementById('live').textContent")
        wait_for(lambda: js(browser, "document.getElementById('live').textContent") != read)
        assert not backend.store.exists(marker)  # a refresh later: nothing was sent

        browser.find_element("id", "cancel").click()
        assert js(browser, f"{dialog}.open") and not backend.store.exists(marker)
        browser.find_element("id", "confirm-yes").click()
        wait_for(lambda: backend.store.exists(marker), timeout=30)
        notice = "document.getElementById('notice').textContent"
        wait_for(lambda: "is cancelled" in js(browser, notice), timeout=30)
        badge = "document.querySelector('#job-head .badge').dataset.state"
        wait_for(lambda: js(browser, badge) == "cancelled", timeout=30)
        assert js(browser, "document.getElementById('cancel').disabled")
        browser.save_screenshot(str(tmp_path / "dashboard-cancelled.png"))
    assert cf.Job.attach(job.id, url).status().cancelled
