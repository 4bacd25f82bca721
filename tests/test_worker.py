"""The durable worker end to end: real worker processes on an embedded backend in tmp_path.

Workers are ``cheerful worker`` processes (:func:`durable_helpers.worker_fleet`). A few tests run :func:`run_worker` in this process, where that is all they need.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import pytest

import cheerful as cf
from cheerful.durable import layout
from cheerful.durable.backends import local_backend, open_backend
from cheerful.durable.fleet import LocalFleet
from cheerful.durable.messages import ChunkMessage, ChunkRecord
from cheerful.durable.records import record_keys
from cheerful.durable.worker import WorkerSummary, run_worker
from cheerful.serialize import dumps, loads
from cheerful.task import ChunkResult
from durable_helpers import wait_for, worker_fleet


def fleet(backend, count: int = 1, **options) -> LocalFleet:
    """Worker processes that can import this module's tasks (pickled by reference)."""
    options.setdefault("idle_exit", 2.0)
    return worker_fleet(backend, count, os.path.dirname(__file__), **options)


@pytest.fixture
def backend(tmp_path):
    with open_backend(f"local://{tmp_path}/backend") as backend:
        yield backend


def records(backend, job) -> list[ChunkRecord]:
    store = backend.store
    return [loads(store.get(k)) for k in record_keys(store, job.id)]


# --- tasks (module level: workers load them by reference) -------------------------------


def square(x):
    return x * x


def noisy(x):
    print(f"working on {x}")
    if x % 10 == 7:
        print(f"about to fail on {x}", file=sys.stderr)
        raise ValueError(f"bad input {x}")
    return x + 100


def draws(_):
    import random

    import numpy as np

    return random.random(), float(np.random.random()), float(cf.task_rng().random())


def sleepy(seconds):
    time.sleep(seconds)
    return seconds


def touch_and_sleep(args):
    path, seconds = args
    with open(path, "a") as file:
        file.write(f"{os.getpid()} {time.time()}\n")
    time.sleep(seconds)
    return seconds


def trivial(x):
    return x


# --- whole jobs on worker processes -----------------------------------------------------


def test_a_job_runs_on_worker_processes(backend, tmp_path):
    job = cf.submit(noisy, range(120), backend=backend, chunk_size=7, retries=1)
    with fleet(backend, 2, slots=2, log_dir=tmp_path / "workers") as workers:
        status = job.wait(progress=False, timeout=60)
        assert workers.wait(30) == [0, 0]  # both leave when idle
    assert status.done == 108 and status.failed == 12
    values = job.results(errors="return")
    assert [v for i, v in enumerate(values) if i % 10 != 7] == [
        i + 100 for i in range(120) if i % 10 != 7
    ]
    failure = job.failures()[0]
    assert failure.index == 7 and failure.type_name == "ValueError" and failure.attempts == 2
    log = job.logs(7)
    assert (
        "working on 7" in log and "about to fail on 7" in log and "ValueError: bad input 7" in log
    )
    assert job.logs(8) == "working on 8\n"
    assert job.status().done == 108  # the workers' counters add up
    assert "stopped (idle)" in (tmp_path / "workers" / "worker-0.log").read_text()


def test_seeded_tasks_draw_what_cf_map_draws(backend):
    job = cf.submit(draws, range(30), backend=backend, seed=42, chunk_size=4)
    run_worker(backend, slots=2, idle_exit=0.5)
    assert job.results() == cf.map(draws, range(30), seed=42, plan=cf.processes(2))


def test_script_and_command_jobs_run(backend, tmp_path):
    script = tmp_path / "fit.py"
    script.write_text("print('fitting', i)\nresult = i * 3\n")
    scripted = cf.submit_script(script, [{"i": i} for i in range(6)], backend=backend)
    command = cf.submit_command("echo value=$X", [{"X": x} for x in range(3)], backend=backend)
    run_worker(backend, slots=2, idle_exit=0.5)
    assert scripted.results() == [0, 3, 6, 9, 12, 15]
    assert scripted.logs(4) == "fitting 4\n"
    assert [r.stdout.strip() for r in command.results()] == ["value=0", "value=1", "value=2"]


def test_spilled_inputs_are_read_from_the_store(tmp_path):
    small = local_backend(tmp_path / "b", max_message_bytes=2000)
    job = cf.submit(len, ["x" * 3000, "y" * 10], backend=small, chunk_size=1)
    run_worker(small.url, slots=1, idle_exit=0.5)
    assert job.results() == [3000, 10]


def test_throughput_of_trivial_tasks(backend):
    """10,000 trivial tasks, 2 slots, automatic chunk size: submit to last result."""
    with fleet(backend, 1, slots=2, idle_exit=5.0):
        wait_for(lambda: list(backend.store.list("nodes")), timeout=30)  # the worker is up
        started = time.perf_counter()
        job = cf.submit(trivial, range(10_000), backend=backend)
        chunks = job.manifest["chunks"]
        wait_for(lambda: len(record_keys(backend.store, job.id)) == chunks, every=0.01)
        seconds = time.perf_counter() - started
    assert job.results(wait=False) == list(range(10_000))
    rate = 10_000 / seconds
    print(f"\n{rate:.0f} tasks/s (chunk size {job.manifest['chunk_size']}, {seconds:.2f} s)")
    assert rate > 1000  # ~10,000/s on an idle 2-core machine; generous for busy ones


# --- which messages run -----------------------------------------------------------------


def test_a_worker_for_one_job_leaves_the_others(backend):
    mine = cf.submit(square, range(20), backend=backend, chunk_size=5)
    other = cf.submit(square, range(10), backend=backend, chunk_size=5)
    summary = run_worker(backend, job=mine.id, slots=2, idle_exit=1.0)
    assert mine.results() == [x * x for x in range(20)]
    assert summary.released == 0  # it never even received them
    assert not records(backend, other)
    assert backend.queue.counts().visible == 2  # the other job's two chunks wait
    run_worker(backend, slots=2, idle_exit=0.5)
    assert other.results() == [x * x for x in range(10)]


def test_a_cancelled_jobs_messages_are_deleted(backend):
    job = cf.submit(square, range(20), backend=backend, chunk_size=5)
    job.cancel()
    summary = run_worker(backend, slots=1, idle_exit=0.5)
    assert summary.chunks == 0 and not records(backend, job)
    assert backend.queue.counts() == type(backend.queue.counts())(0, 0, 0)


def test_a_duplicate_delivery_is_deleted_without_running(backend):
    job = cf.submit(square, range(4), backend=backend, chunk_size=4)
    first = ChunkRecord(job.id, 0, ChunkResult((0, 1, 2, 3), ["mine"] * 4), worker="earlier")
    backend.store.put(layout.result(job.id, 0), dumps(first))
    summary = run_worker(backend, slots=1, idle_exit=0.5)
    assert summary.duplicates == 1 and summary.chunks == 0
    assert job.results() == ["mine"] * 4
    assert backend.queue.counts().visible == 0


def test_the_worker_writes_its_counters_and_heartbeat(backend):
    job = cf.submit(square, range(30), backend=backend, chunk_size=10)
    summary = run_worker(backend, slots=2, idle_exit=0.5, node="node-a")
    assert isinstance(summary, WorkerSummary)
    assert summary.worker == f"node-a-{os.getpid()}" and summary.reason == "idle"
    assert (summary.chunks, summary.done, summary.failed) == (3, 30, 0)
    status = json.loads(backend.store.get(layout.status(job.id, summary.worker)))
    assert status["done"] == 30 and status["failed"] == 0 and status["running"] == 0
    node = json.loads(backend.store.get(layout.node(summary.worker)))
    assert node["state"] == "stopped" and node["slots"] == 2 and list(node["jobs"]) == [job.id]
    assert node["jobs"][job.id] == {"chunks": 3, "done": 30, "failed": 0, "running": 0}
    assert node["host"] and node["pid"] == os.getpid() and node["running"] == []
    assert node["usage"]["cores"] >= 1 and node["usage"]["memory_total"] > 0


def test_idle_exit_leaves_an_empty_queue(backend):
    started = time.monotonic()
    summary = run_worker(backend, slots=1, idle_exit=0.5)
    assert summary.reason == "idle" and time.monotonic() - started < 5


# --- stopping ---------------------------------------------------------------------------


def test_sigterm_lets_running_chunks_finish_and_releases_the_rest(backend, tmp_path):
    marks = tmp_path / "marks"
    job = cf.submit(touch_and_sleep, [(str(marks), 1.0)] * 6, backend=backend, chunk_size=1)
    with fleet(backend, 1, slots=2, grace=20.0, idle_exit=60.0) as workers:
        wait_for(lambda: marks.exists() and len(marks.read_text().splitlines()) >= 2)
        workers.processes[0].send_signal(signal.SIGTERM)
        assert workers.wait(15) == [0]
    done = records(backend, job)
    assert 2 <= len(done) < 6  # the two running chunks finished, the others were released
    assert backend.queue.counts().in_flight == 0
    run_worker(backend, slots=2, idle_exit=0.5)
    assert job.results() == [1.0] * 6
    assert len(records(backend, job)) == 6


def test_grace_expiry_releases_running_chunks_at_once(backend):
    job = cf.submit(sleepy, [60], backend=backend)
    stop = threading.Event()
    timer = threading.Timer(1.5, stop.set)
    timer.start()
    started = time.monotonic()
    summary = run_worker(backend, slots=1, grace=0.5, visibility=600, stop_event=stop)
    assert summary.reason == "grace expired" and summary.released == 1
    assert time.monotonic() - started < 10
    assert backend.queue.counts().visible == 1  # released, not held for 600 s
    assert not records(backend, job)


def test_stop_event_with_nothing_running_exits_at_once(backend):
    stop = threading.Event()
    stop.set()
    assert run_worker(backend, slots=1, stop_event=stop).reason == "stopped"


def test_a_message_that_is_not_a_chunk_does_not_stop_the_worker(backend):
    backend.queue.send([b"\x00garbage"])
    job = cf.submit(square, range(3), backend=backend)
    summary = run_worker(backend, slots=1, idle_exit=0.5)
    assert summary.dead_lettered == 1 and job.results() == [0, 1, 4]
    (letter,) = backend.queue.dead_letters()
    assert letter.reason.startswith("malformed message")


def test_a_filtered_worker_does_not_burn_the_receives_of_other_jobs(backend, monkeypatch):
    """A long run of a worker serving job B never receives job A's messages: none of
    them reaches the queue's max_receives (20) and goes to the dead letters."""
    from cheerful.durable.worker import loop

    a = cf.submit(square, range(4), backend=backend, chunk_size=1)
    b = cf.submit(square, range(4), backend=backend, chunk_size=2)
    receive, polls = backend.queue.receive, []

    def counted(*args, **kwargs):
        polls.append(args[3] if len(args) > 3 else kwargs.get("group"))
        return receive(*args, **kwargs)

    (out,) = receive(1, visibility_s=60, group=b.id)  # another worker holds a chunk of B
    monkeypatch.setattr(backend.queue, "receive", counted)
    monkeypatch.setattr(loop, "POLL_S", 0.01)
    ran: list = []
    serve = threading.Thread(target=lambda: ran.append(run_worker(backend, job=b.id, slots=1)))
    serve.start()
    wait_for(lambda: len(polls) > 2 * backend.queue.max_receives)  # B is not settled: it polls
    backend.queue.release(out.receipt)  # that worker gives it up: this one runs it, then leaves
    serve.join(30)
    monkeypatch.undo()
    (summary,) = ran
    assert summary.reason == "job settled"
    assert b.results() == [x * x for x in range(4)]
    assert set(polls) == {b.id}
    assert summary.released == summary.dead_lettered == 0
    assert backend.queue.dead_letters() == []
    assert backend.queue.counts(group=a.id) == type(backend.queue.counts())(4, 0, 0)
    held = backend.queue.receive(10, visibility_s=60, group=a.id)
    assert {ChunkMessage.decode(m.body).job for m in held} == {a.id}
    assert [m.receive_count for m in held] == [1] * 4  # this is their first receive
    backend.queue.release([m.receipt for m in held])
    run_worker(backend, job=a.id, slots=1, idle_exit=0.5)
    assert a.results() == [x * x for x in range(4)]
    assert backend.queue.counts() == type(backend.queue.counts())(0, 0, 0)


def test_a_deleted_jobs_messages_go_with_it_and_strays_are_dead_lettered(backend):
    job = cf.submit(square, range(4), backend=backend, chunk_size=2)
    bodies = [m.body for m in backend.queue.receive(10)]
    job.delete()
    assert backend.queue.counts() == type(backend.queue.counts())(0, 0, 0)
    backend.queue.send(bodies, group=job.id)  # sent again after the delete: strays
    summary = run_worker(backend, slots=1, idle_exit=0.5)
    assert summary.dead_lettered == 2 and summary.chunks == 0
    assert all("not found" in d.reason for d in backend.queue.dead_letters())


def test_the_job_cache_notices_a_deleted_job():
    from cheerful.durable.worker.jobs import CANCEL_CHECK_S, JobCache

    class Store(dict):
        def get(self, key):
            from cheerful.errors import ObjectNotFound

            if key not in self:
                raise ObjectNotFound(key)
            return self[key]

        def exists(self, key):
            return key in self

    store = Store()
    store[layout.manifest("j1")] = json.dumps(
        {"v": layout.LAYOUT_VERSION, "tasks": 3, "retries": 1, "timeout": 2}
    ).encode()
    store[layout.code("j1")] = b"code"
    cache = JobCache(store)
    spec, _ = cache.spec("j1", 0.0)
    assert (spec.tasks, spec.retries, spec.timeout, spec.seed) == (3, 1, 2.0, None)
    assert cache.code("j1") == b"code"
    del store[layout.manifest("j1")]
    assert cache.spec("j1", CANCEL_CHECK_S / 2)[0] == spec  # trusted for a while
    assert cache.spec("j1", CANCEL_CHECK_S + 0.1) == (None, "it was deleted (no manifest)")
    assert cache.spec("j2", 0.0)[0] is None


def test_the_job_cache_says_why_it_cannot_serve_a_job_of_another_layout() -> None:
    class Store(dict):
        def get(self, key):
            return self[key]

    store = Store()
    store[layout.manifest("j1")] = json.dumps({"v": 1, "tasks": 3}).encode()
    store[layout.code("j1")] = b"code"
    from cheerful.durable.worker.jobs import JobCache

    spec, why = JobCache(store).spec("j1", 0.0)
    assert spec is None and "layout v1" in why and "submit it again" in why


def test_an_idle_worker_waits_for_messages_held_by_others(backend):
    """A message held by another worker (which may die) keeps an idle worker from
    leaving: when it comes back, this one runs it, then leaves."""
    job = cf.submit(square, range(2), backend=backend, chunk_size=2)
    (held,) = backend.queue.receive(1, visibility_s=3.0, group=job.id)  # "a worker" took it
    started = time.monotonic()
    summary = run_worker(backend, slots=1, idle_exit=0.5)
    assert summary.reason == "idle" and summary.chunks == 1
    assert time.monotonic() - started >= 2.5  # it waited for the message to come back
    assert job.results() == [0, 1]


def half_way_then_wait(flag):
    cf.task_progress(1, 2)
    deadline = time.monotonic() + 60
    while not os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.05)
    return "done"


def test_the_heartbeat_shows_how_far_a_running_task_says_it_is(backend, tmp_path):
    flag = str(tmp_path / "go-on")
    job = cf.submit(half_way_then_wait, [flag], backend=backend)
    worker = threading.Thread(
        target=run_worker, args=(backend,), kwargs={"slots": 1, "idle_exit": 0.5, "node": "p"}
    )
    worker.start()
    try:

        def half_way():
            for key in backend.store.list(layout.nodes_prefix()):
                running = json.loads(backend.store.get(key))["running"]
                if running and running[0]["task_progress"] == 0.5:
                    return True
            return False

        wait_for(half_way, timeout=30)
    finally:
        open(flag, "w").close()
        worker.join(60)
    assert job.results() == ["done"]
