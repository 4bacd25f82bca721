"""What a job reports is what its store holds: counts from the results (not the workers'
counters), retries that never send a task twice, a submit cut short that says so, a
cancel that cannot undo a finished job. Driven by the stand-in worker of
``durable_helpers`` (one message at a time, in this process) and, where a real process
must die, by real subprocesses.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import warnings

import pytest

import cheerful as cf
from cheerful.durable import layout
from cheerful.durable import waiting as waiting_module
from cheerful.durable.backends import open_backend
from cheerful.durable.job import JobStatus
from cheerful.durable.messages import ChunkMessage
from durable_helpers import drain, wait_for


@pytest.fixture
def backend(tmp_path):
    with open_backend(f"local://{tmp_path}/backend") as backend:
        yield backend


def flaky(args):
    """Fails while the switch file says "fail" (and counts its runs in ``runs``)."""
    switch, runs, x = args
    with open(runs, "a") as file:
        file.write(f"{x}\n")
    with open(switch) as file:
        failing = file.read() == "fail"
    if failing and x % 3 == 0:
        raise RuntimeError(f"flaky {x}")
    return -x


def fixed(args):
    """The fixed version of ``flaky``: never fails."""
    _, _, x = args
    print(f"fixed {x}")
    return x * 100


def runs_of(path) -> dict[int, int]:
    counts: dict[int, int] = {}
    with open(path) as file:
        lines = file.read().split()
    for line in lines:
        counts[int(line)] = counts.get(int(line), 0) + 1
    return counts


def failing_job(backend, tmp_path, tasks=10, chunk_size=4):
    switch, runs = tmp_path / "switch", tmp_path / "runs"
    switch.write_text("fail")
    items = [(str(switch), str(runs), x) for x in range(tasks)]
    job = cf.submit(flaky, items, backend=backend, chunk_size=chunk_size, retries=0)
    drain(backend)
    return job, switch, runs


# --- counts that are exact ----------------------------------------------------------------


def test_a_settled_job_counts_from_its_results_whatever_the_counters_say(backend, tmp_path):
    job, _, _ = failing_job(backend, tmp_path)
    store = backend.store
    store.delete_prefix(layout.status_prefix(job.id))  # a worker killed before counting
    fake = {"done": 10, "failed": 0, "running": 0, "updated": 0}
    store.put(layout.status(job.id, "liar-1"), json.dumps(fake).encode())
    status = job.status()
    assert (status.done, status.failed, status.dead, status.queued) == (6, 4, 0, 0)
    assert status.settled and status.state == "failed"
    assert job.wait(progress=False) == status
    assert [f.index for f in job.failures()] == [0, 3, 6, 9]


def test_a_record_whose_summary_is_missing_is_read_once(backend, tmp_path):
    """A worker killed between storing a record and its summary: the count still holds."""
    job, _, _ = failing_job(backend, tmp_path)
    store = backend.store
    summaries = [k for k in store.list(layout.results_prefix(job.id)) if ".failed-" in k]
    assert len(summaries) == 3
    for key in summaries:
        store.delete(key)
    status = job.status()
    assert (status.done, status.failed, status.settled) == (6, 4, True)


def test_counts_while_tasks_run_always_add_up(backend, tmp_path):
    job = cf.submit(abs, range(100), backend=backend, chunk_size=10)
    now = __import__("time").time()
    for n, counts in enumerate([(90, 0, 40), (30, 5, 20)]):  # more than the job has
        done, failed, running = counts
        data = {"done": done, "failed": failed, "running": running, "updated": now}
        backend.store.put(layout.status(job.id, f"w-{n}"), json.dumps(data).encode())
    status = job.status()
    parts = (status.done, status.failed, status.dead, status.running, status.queued)
    assert sum(parts) + status.dropped == 100 and min(parts) >= 0
    assert status.running == 60 and not status.settled and status.state == "running"


def test_a_job_whose_workers_are_gone_is_not_running(backend, tmp_path):
    job = cf.submit(abs, range(10), backend=backend, chunk_size=5)
    old = {"done": 0, "failed": 0, "running": 5, "updated": 1000.0}  # a worker gone long ago
    backend.store.put(layout.status(job.id, "gone-1"), json.dumps(old).encode())
    status = job.status()
    assert (status.running, status.queued, status.workers) == (0, 10, 0)
    assert status.state == "queued"


@pytest.mark.parametrize(
    "fields",
    [
        dict(done=1, queued=2),
        dict(done=1, failed=1, running=1),
        dict(dropped=3, cancelled=True),
        dict(done=3, settled=True),
    ],
)
def test_a_status_adds_up_and_prints_what_it_holds(fields):
    base = dict(total=3, queued=0, running=0, done=0, failed=0, dead=0)
    status = JobStatus(**{**base, **fields})
    parts = (status.done, status.failed, status.dead, status.running, status.queued)
    assert sum(parts) + status.dropped == status.total
    assert f"{status.done}/3 done" in str(status)


# --- retry: never twice, fixed code, attempts on --------------------------------------


def test_retry_twice_sends_each_failed_task_once(backend, tmp_path):
    job, switch, runs = failing_job(backend, tmp_path)
    assert job.retry_failed() == 4
    assert job.retry_failed() == 0  # the four are sent already, no outcome yet
    assert job.status().failed == 0 and job.status().queued == 4
    drain(backend)  # still failing
    assert runs_of(runs) == {i: 2 if i % 3 == 0 else 1 for i in range(10)}
    status = job.status()
    assert (status.done, status.failed, status.settled) == (6, 4, True)
    switch.write_text("pass")
    assert job.retry_failed() == 4
    drain(backend)
    assert job.results() == [-x for x in range(10)]
    assert job.status().failed == 0


def test_retries_at_the_same_time_never_send_a_task_twice(backend, tmp_path):
    job, _, _ = failing_job(backend, tmp_path, tasks=30, chunk_size=3)
    sent, start = [], threading.Barrier(4)

    def one_retry():
        start.wait()
        sent.append(cf.Job.attach(job.id, backend).retry_failed())

    threads = [threading.Thread(target=one_retry) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(sent) == [0, 0, 0, 10]
    messages = backend.queue.receive(100, visibility_s=60)
    indices = sorted(i for m in messages for i in ChunkMessage.decode(m.body).indices)
    assert indices == list(range(0, 30, 3))


def test_a_failure_after_a_retry_stays_counted(backend, tmp_path):
    job, switch, runs = failing_job(backend, tmp_path)
    job.retry_failed()
    drain(backend)  # they fail again
    assert job.wait(progress=False).failed == 4
    assert job.status().failed == 4 and len(job.failures()) == 4


def test_retry_with_fixed_code_numbers_attempts_on_and_keeps_old_logs(backend, tmp_path):
    job, _, _ = failing_job(backend, tmp_path)
    before = job.logs(3)
    assert "RuntimeError: flaky 3" in before
    assert job.retry_failed(fixed) == 4
    drain(backend)
    got = job.results()
    assert got == [x * 100 if x % 3 == 0 else -x for x in range(10)]
    assert job.logs(3) == "fixed 3\n"  # the last attempt's
    assert job.logs(3, attempt=1) == before  # the first attempt's log stays
    assert job.logs(3, attempt=2) == "fixed 3\n"


def test_retry_with_code_of_the_wrong_kind_is_refused(backend, tmp_path):
    job, _, _ = failing_job(backend, tmp_path)
    with pytest.raises(cf.ConfigError, match="fn="):
        job.retry_failed(script="fixed.py")


# --- a submit cut short ----------------------------------------------------------------

CUT_SHORT = """
import os, signal, sys
import cheerful as cf
from cheerful.durable.backends import open_backend

backend = open_backend(sys.argv[1])
send, batches = backend.queue.send, []

def dying_send(bodies, group=""):
    batches.append(len(bodies))
    if len(batches) == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # killed mid-send, as by kill -9
    return send(bodies, group=group)

backend.queue.send = dying_send
cf.submit(abs, range(5000), backend=backend, chunk_size=10)
"""


def test_a_submit_killed_mid_send_is_marked_incomplete(backend, tmp_path):
    script = tmp_path / "submit.py"
    script.write_text(CUT_SHORT)
    done = subprocess.run([sys.executable, str(script), backend.url], timeout=60)
    assert done.returncode == -signal.SIGKILL
    (job,) = cf.jobs(backend)
    assert backend.queue.counts(job.id).visible == 200  # two batches of 100 chunks went out
    status = job.status()
    assert status.state == "incomplete" and "submit was cut short" in status.incomplete
    with pytest.raises(cf.JobError, match="submit was cut short"):
        job.wait(progress=False, timeout=30)
    drain(backend)
    with pytest.raises(cf.JobError, match="submit was cut short"):
        job.wait(progress=False, timeout=30)  # never waits for tasks that were never sent
    status = job.status()
    assert (status.done, status.queued, status.settled) == (2000, 3000, False)


def test_a_retry_cut_short_is_finished_by_the_next(backend, tmp_path):
    job, switch, _ = failing_job(backend, tmp_path)
    switch.write_text("pass")
    from cheerful.durable.rounds import Round

    stale = Round(1, 3, ((0, 3, 6, 9),), ((1, 1, 1, 1),), None, 0.0)
    claim = stale.to_json(by={"host": "elsewhere", "pid": 1})
    backend.store.put(layout.round_spec(job.id, 1), claim)  # claimed, nothing sent
    status = job.status()
    assert "retry round 1 was cut short" in status.incomplete
    assert job.retry_failed() == 4  # finishes round 1
    assert job.status().incomplete == ""
    drain(backend)
    assert job.results() == [-x for x in range(10)]


# --- cancel ------------------------------------------------------------------------------


def test_cancelling_a_finished_job_changes_nothing(backend, tmp_path):
    job = cf.submit(abs, range(4), backend=backend)
    drain(backend)
    with pytest.raises(cf.JobError, match="has finished"):
        job.cancel()
    assert job.status().state == "done" and not backend.store.exists(layout.cancelled(job.id))


def test_a_cancelled_job_shows_its_tasks_dropped_not_queued(backend):
    job = cf.submit(abs, range(6), backend=backend, chunk_size=2)
    job.cancel()
    status = job.status()
    assert (status.queued, status.dropped, status.state) == (0, 6, "cancelled")
    assert "6 dropped" in str(status)


# --- waiting with nobody to do the work ------------------------------------------------


def test_wait_says_once_when_no_worker_takes_the_job(backend, monkeypatch):
    monkeypatch.setattr(waiting_module, "NO_WORKER_S", 0.3)
    job = cf.submit(abs, range(3), backend=backend)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(cf.WaitTimeout):
            job.wait(progress=False, timeout=1.5, poll=0.05)
    said = [w for w in caught if "no worker has taken a task" in str(w.message)]
    assert len(said) == 1 and f"cheerful worker --job {job.id}" in str(said[0].message)


def test_run_local_workers_finish_the_job_and_leave(backend):
    job = cf.submit(abs, range(-5, 5), backend=backend, chunk_size=3)
    fleet = job.run_local(2, slots=1)
    try:
        status = job.wait(progress=False, timeout=60)
        assert status.done == 10 and job.results() == [abs(x) for x in range(-5, 5)]
        assert wait_for(lambda: not fleet.alive(), timeout=30)  # they leave by themselves
        assert [p.returncode for p in fleet.processes] == [0, 0]
    finally:
        fleet.stop()


# --- submitting big inputs -------------------------------------------------------------

BIG_INPUT = """
import resource, sys
import cheerful as cf
size = int(sys.argv[2])
data = b"x" * size
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
job = cf.submit(len, [data], backend=sys.argv[1])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) * 1024 / size)
"""


def test_a_big_input_is_held_at_most_twice_while_it_is_submitted(tmp_path):
    script = tmp_path / "big.py"
    script.write_text(textwrap.dedent(BIG_INPUT))
    size = 200 * 1024 * 1024
    url = f"local://{tmp_path}/backend"
    done = subprocess.run(
        [sys.executable, str(script), url, str(size)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    extra = float(done.stdout)  # peak memory the submit added, in sizes of the input
    assert extra <= 1.1, extra  # one pickled copy beside the input: 2x in all
    with open_backend(url) as backend:
        (job,) = cf.jobs(backend)
        spilled = [k for k in backend.store.list(layout.inputs_prefix(job.id))]
        assert len(spilled) == 1 and os.path.getsize(backend.store.root / spilled[0]) > size


def test_a_big_remote_job_is_listed_shard_by_shard_with_the_same_outcome(tmp_path):
    from cheerful.durable.counts import SHARDED_LIST_KEYS, list_results
    from cheerful.durable.stores.local import LocalStore

    store = LocalStore(str(tmp_path / "store"))
    for chunk in range(300):
        store.put(layout.result("j", chunk), b"record")
        if chunk % 7 == 0:
            store.put(layout.summary("j", chunk, chunk % 3), b"")
    store.put("jobs/j/results/zz-not-a-result", b"")
    page_by_page = list_results(store, "j", 300)
    store.remote = True  # as S3 is: now listed in parallel, one prefix per shard
    assert list_results(store, "j", SHARDED_LIST_KEYS) == page_by_page
    assert len(page_by_page.records) == 300 and page_by_page.failed[7] == 1
