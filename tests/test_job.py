"""The job side of durable jobs, end to end on the embedded backend.

The worker is the small stand-in of ``durable_helpers.drain`` (real SqliteQueue and
LocalStore under tmp_path, no mocks); it follows docs/durable.md the way the real
worker does.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

import cheerful as cf
from cheerful.durable import layout
from cheerful.durable.backends import local_backend, open_backend
from cheerful.durable.job import JobStatus
from cheerful.durable.messages import ChunkMessage
from cheerful.durable.submit import auto_chunk_size
from durable_helpers import drain


@pytest.fixture
def backend(tmp_path):
    with open_backend(f"local://{tmp_path}/backend") as backend:
        yield backend


def square(x):
    return x * x


def noisy(x):
    print(f"working on {x}")
    if x % 4 == 3:
        print(f"about to fail on {x}", file=sys.stderr)
        raise ValueError(f"bad input {x}")
    return x + 100


def flaky(path_and_x):
    path, x = path_and_x
    if x % 3 == 0 and Path(path).read_text() == "fail":
        raise RuntimeError(f"flaky {x}")
    return -x


def draw(x):
    import numpy as np

    return (random.random(), float(np.random.random()), float(cf.task_rng().random()), x)


def keys(backend, job):
    return list(backend.store.list(layout.job_prefix(job.id)))


def bodies(backend):
    """Every visible message, decoded (received and then released)."""
    messages = backend.queue.receive(10, visibility_s=60)
    while len(messages) % 10 == 0 and messages:
        more = backend.queue.receive(10, visibility_s=60)
        if not more:
            break
        messages += more
    backend.queue.release([m.receipt for m in messages])
    return [ChunkMessage.decode(m.body) for m in messages]


# --- submit ---------------------------------------------------------------------------


def test_submit_stores_code_and_manifest_once_and_one_message_per_chunk(backend):
    """Inputs that fit ride in the messages: no input object per chunk."""
    job = cf.submit(square, range(10), backend=backend, chunk_size=3, seed=5, name="sq")
    assert job.id.startswith("sq-") and job.name == "sq" and job.tasks == 10
    prefix = layout.job_prefix(job.id)
    names = ("code.pkl", "items.pkl", "manifest.json", "submitted")
    assert keys(backend, job) == [f"{prefix}/{name}" for name in names]
    manifest = json.loads(backend.store.get(layout.manifest(job.id)))
    assert manifest["id"] == job.id
    assert manifest["kind"] == "function" and manifest["label"] == "square"
    assert (manifest["tasks"], manifest["chunks"], manifest["chunk_size"]) == (10, 4, 3)
    assert (manifest["seed"], manifest["retries"], manifest["timeout"]) == (5, 2, None)
    assert manifest["backend"] == backend.url
    assert set(manifest["versions"]) == {"python", "cheerful", "cloudpickle"}
    assert backend.queue.counts().visible == 4
    messages = sorted(bodies(backend), key=lambda m: m.chunk)
    assert [tuple(m.indices) for m in messages] == [(0, 1, 2), (3, 4, 5), (6, 7, 8), (9,)]
    assert all(m.spill is None and m.inputs for m in messages)


def test_the_id_has_a_time_stamp_and_a_random_part(backend):
    job = cf.submit(square, [1], backend=backend)
    name, day, clock, tail = job.id.split("-")
    assert name == "job" and len(day) == 8 and len(clock) == 6 and len(tail) == 4


def test_automatic_chunk_sizes():
    assert [auto_chunk_size(n) for n in (1, 10, 200, 201, 10_000, 10**7)] == [
        1,
        1,
        1,
        2,
        50,
        1000,
    ]
    remote = [auto_chunk_size(n, remote=True) for n in (100, 101, 10_000, 100_000)]
    assert remote == [1, 2, 100, 100]  # at most 100 a chunk on SQS + S3
    # known slots: about eight chunks each (100 instances of 16 slots: 12,800 chunks)
    assert auto_chunk_size(100_000, remote=True, slots=1600) == 8


def test_big_inputs_spill_to_the_store(tmp_path):
    backend = local_backend(tmp_path / "b", max_message_bytes=2000)
    items = [b"x" * 1500, b"y", b"z" * 3000]
    job = cf.submit(len, items, backend=backend, chunk_size=1)
    messages = {m.chunk: m for m in bodies(backend)}
    assert messages[1].inputs and messages[1].spill is None
    for chunk in (0, 2):
        assert messages[chunk].inputs is None
        assert messages[chunk].spill == layout.input(job.id, chunk)
        assert backend.store.exists(layout.input(job.id, chunk))
    assert drain(backend) == 3
    assert job.results() == [1500, 1, 3000]


def test_a_submit_with_big_arrays(backend):
    np = pytest.importorskip("numpy")
    arrays = [np.full(100_000, i, dtype=np.float64) for i in range(3)]  # 800 kB each
    job = cf.submit(np.sum, arrays, backend=backend, chunk_size=1)
    assert all(m.spill is not None for m in bodies(backend))
    drain(backend)
    assert job.results() == [0.0, 100_000.0, 200_000.0]


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda b: cf.submit(42, [1], backend=b), "function"),
        (lambda b: cf.submit(square, [], backend=b), "empty"),
        (lambda b: cf.submit(square, "abc", backend=b), "string"),
        (lambda b: cf.submit(square, 42, backend=b), "iterable"),
        (lambda b: cf.submit(square, [1], backend=b, chunk_size=0), "chunk_size"),
        (lambda b: cf.submit(square, [1], backend=b, seed=-1), "seed"),
        (lambda b: cf.submit(square, [1], backend=b, retries=-1), "retries"),
        (lambda b: cf.submit(square, [1], backend=b, retries=True), "retries"),
        (lambda b: cf.submit(square, [1], backend=b, timeout=0), "timeout"),
        (lambda b: cf.submit(square, [1], backend=b, name="has space"), "job name"),
        (lambda b: cf.submit(square, [1], backend=b, name="x" * 101), "over 100"),
        (lambda b: cf.submit(square, [1], backend="s3://Bucket/p"), "bucket name"),
        (lambda b: cf.submit_command("", [{"i": 1}], backend=b), "cmd"),
        (lambda b: cf.submit_command([], [{"i": 1}], backend=b), "cmd"),
        (lambda b: cf.submit_command(["echo", 1], [{"i": 1}], backend=b), "cmd"),
        (lambda b: cf.submit_command("echo", [], backend=b), "envs is empty"),
        (lambda b: cf.submit_script("/no/such/script.py", [{"i": 1}], backend=b), "cannot be read"),
    ],
)
def test_bad_arguments_submit_nothing(backend, call, words):
    with pytest.raises(cf.ConfigError, match=words):
        call(backend)
    assert list(backend.store.list()) == []
    assert backend.queue.counts().visible == 0


# --- reading results ------------------------------------------------------------------


def test_results_come_back_in_input_order(backend):
    job = cf.submit(square, range(23), backend=backend, chunk_size=4)
    assert drain(backend) == 6
    assert job.results() == [x * x for x in range(23)]
    status = job.status()
    assert (status.total, status.done, status.failed, status.queued, status.workers) == (
        23,
        23,
        0,
        0,
        1,
    )
    assert status.finished and not status.cancelled


def test_status_before_any_worker_runs(backend):
    job = cf.submit(square, range(7), backend=backend, chunk_size=2)
    status = job.status()
    assert (status.queued, status.done, status.running, status.workers) == (7, 0, 0, 0)
    assert not status.finished
    assert str(status) == "0/7 done, 0 failed, 0 dead, 0 running, 7 queued"


def test_results_without_waiting_on_an_unfinished_job(backend):
    job = cf.submit(square, range(4), backend=backend, chunk_size=2)
    with pytest.raises(cf.JobError, match="not finished: 4 of 4"):
        job.results(wait=False)
    got = job.results(wait=False, errors="return")
    assert all(isinstance(slot, cf.Failure) for slot in got)
    assert isinstance(got[0].exception, cf.JobError)


def test_wait_times_out_and_reports_progress(backend):
    job = cf.submit(square, range(4), backend=backend, chunk_size=2)
    with pytest.raises(cf.WaitTimeout, match="not finished") as info:
        job.wait(progress=False, timeout=0.2, poll=0.05)
    assert isinstance(info.value, TimeoutError)
    with pytest.raises(cf.WaitTimeout):
        job.results(timeout=0.1)
    drain(backend)
    events = []
    status = job.wait(progress=lambda **event: events.append(event), poll=0.05)
    assert status.done == 4 and status.finished
    assert events[0]["event"] == "start" and events[-1]["event"] == "finish"
    assert events[-1]["done"] == 4 and events[-1]["total"] == 4


def test_wait_settles_from_the_results_when_counters_are_lost(backend, capsys):
    job = cf.submit(square, range(5), backend=backend, chunk_size=2)
    drain(backend)
    backend.store.delete_prefix(layout.status_prefix(job.id))  # a worker killed before counting
    assert job.status().done == 5  # the counts come from the results, not the counters
    status = job.wait(progress=True)  # stderr is no terminal: one summary line at the end
    assert (status.done, status.queued, status.finished) == (5, 0, True)
    assert job.results() == [0, 1, 4, 9, 16]


def test_failed_tasks_raise_job_failed_with_their_own_exception(backend):
    job = cf.submit(noisy, range(8), backend=backend, chunk_size=3, retries=1)
    drain(backend)
    with pytest.raises(cf.JobFailed) as info:
        job.results()
    err = info.value
    assert [f.index for f in err.failures] == [3, 7]
    assert "2 of 8 tasks failed" in str(err) and "task 3: ValueError: bad input 3" in str(err)
    assert type(err.__cause__) is ValueError and "bad input 3" in str(err.__cause__)
    assert "noisy" in str(err.__cause__.__cause__)  # the remote traceback


def test_errors_return_puts_failures_in_their_slots(backend):
    job = cf.submit(noisy, range(8), backend=backend, chunk_size=3, retries=0)
    drain(backend)
    got = job.results(errors="return")
    assert got[:3] == [100, 101, 102] and got[4:7] == [104, 105, 106]
    for index in (3, 7):
        assert isinstance(got[index], cf.Failure) and got[index].index == index
        assert type(got[index].exception) is ValueError
        assert "bad input" in got[index].traceback
    with pytest.raises(cf.ConfigError, match="errors"):
        job.results(errors="ignore")


def test_failures_fields_and_logs(backend):
    job = cf.submit(noisy, range(8), backend=backend, chunk_size=3, retries=2)
    drain(backend)
    failures = job.failures()
    assert [f.index for f in failures] == [3, 7]
    first = failures[0]
    assert isinstance(first, cf.TaskFailure)
    assert (first.type_name, first.message, first.attempts) == ("ValueError", "bad input 3", 3)
    assert "noisy" in first.traceback and "ValueError: bad input 3" in first.traceback
    assert first.log == layout.log(job.id, 3, 3)
    log = job.logs(3)
    assert "working on 3" in log and "about to fail on 3" in log and "bad input 3" in log
    assert job.logs(1) == "working on 1\n"
    with pytest.raises(cf.ConfigError, match="out of range"):
        job.logs(8)
    with pytest.raises(cf.ConfigError, match="out of range"):
        job.logs(-1)


def test_logs_of_a_task_that_printed_nothing(backend):
    job = cf.submit(square, range(3), backend=backend)
    assert job.logs(1) == ""  # not run yet
    drain(backend)
    assert job.logs(1) == ""


def test_seeds_match_cf_map(backend):
    pytest.importorskip("numpy")
    job = cf.submit(draw, range(9), backend=backend, chunk_size=4, seed=7)
    drain(backend)
    expected = cf.map(draw, range(9), seed=7, plan=cf.sequential())
    assert job.results() == expected
    assert job.results() == cf.map(draw, range(9), seed=7, plan=cf.processes(2), chunk_size=2)


# --- acting on a job ------------------------------------------------------------------


def test_retry_failed_sends_new_chunks_and_results_merge(backend, tmp_path):
    switch = tmp_path / "switch"
    switch.write_text("fail")
    items = [(str(switch), x) for x in range(10)]
    job = cf.submit(flaky, items, backend=backend, chunk_size=4, retries=0)
    drain(backend)
    assert [f.index for f in job.failures()] == [0, 3, 6, 9]
    assert job.status().failed == 4
    switch.write_text("pass")
    assert job.retry_failed() == 4
    assert job.status().failed == 0 and job.status().queued == 4
    messages = sorted(bodies(backend), key=lambda m: m.chunk)
    assert [(m.chunk, m.indices) for m in messages] == [(3, (0, 3, 6, 9))]
    round_1 = json.loads(backend.store.get(layout.round_spec(job.id, 1)))
    assert round_1["first_chunk"] == 3 and round_1["chunks"] == [[0, 3, 6, 9]]
    assert drain(backend) == 1
    assert job.results() == [-x for x in range(10)]
    assert job.failures() == []
    status = job.status()
    assert (status.done, status.failed, status.queued) == (10, 0, 0)
    assert job.retry_failed() == 0


def test_a_retried_task_that_fails_again(backend, tmp_path):
    switch = tmp_path / "switch"
    switch.write_text("fail")
    job = cf.submit(flaky, [(str(switch), x) for x in range(4)], backend=backend, retries=0)
    drain(backend)
    assert job.retry_failed() == 2
    drain(backend)
    assert job.retry_failed() == 2
    drain(backend)
    assert job.status().failed == 2 and job.wait(progress=False).failed == 2
    assert json.loads(backend.store.get(layout.round_spec(job.id, 2)))["first_chunk"] == 6
    assert [f.index for f in job.failures()] == [0, 3]
    assert job.logs(0).endswith("RuntimeError: flaky 0\n")


def test_dead_chunks_fail_with_worker_crashed_and_retry_redrives_them(backend):
    job = cf.submit(square, range(6), backend=backend, chunk_size=2)
    held = {ChunkMessage.decode(m.body).chunk: m.receipt for m in backend.queue.receive(10)}
    backend.queue.dead_letter(held.pop(1), "received 20 times without being deleted")
    backend.queue.release(list(held.values()))
    drain(backend)
    status = job.wait(progress=False)
    assert (status.done, status.dead, status.failed) == (4, 2, 0)
    got = job.results(errors="return")
    assert got[0] == 0 and got[4:] == [16, 25]
    assert isinstance(got[2].exception, cf.WorkerCrashed) and "20 times" in str(got[2].exception)
    (first, second) = job.failures()
    assert (first.index, second.index, first.type_name) == (2, 3, "WorkerCrashed")
    with pytest.raises(cf.JobFailed) as info:
        job.results()
    assert isinstance(info.value.__cause__, cf.WorkerCrashed)
    assert job.retry_failed() == 2
    assert backend.queue.counts().dead == 0 and job.status().dead == 0
    drain(backend)
    assert job.results() == [x * x for x in range(6)]


def test_cancel_drops_the_remaining_chunks(backend):
    job = cf.submit(square, range(6), backend=backend, chunk_size=2)
    assert job.cancel() is True and job.cancel() is False
    assert drain(backend) == 0
    assert backend.queue.counts().visible == 0
    status = job.wait(progress=False)
    assert status.cancelled and status.done == 0
    with pytest.raises(cf.JobError, match="cancelled: 6 task"):
        job.results()
    got = job.results(errors="return")
    assert all(isinstance(slot, cf.Failure) for slot in got)
    with pytest.raises(cf.JobError, match="cancelled"):
        job.retry_failed()


def test_attach_and_list_jobs(backend):
    first = cf.submit(square, range(3), backend=backend, name="first")
    second = cf.submit(square, range(5), backend=backend.url, name="second")
    again = cf.Job.attach(first.id, backend=backend.url)
    assert again.manifest == first.manifest and again.tasks == 3
    assert repr(again) == f"Job({first.id!r}, tasks=3, backend={backend.url!r})"
    assert [job.id for job in cf.jobs(backend)] == [first.id, second.id]
    drain(backend)
    assert cf.Job.attach(second.id, backend=backend).results() == [0, 1, 4, 9, 16]
    with pytest.raises(cf.JobNotFound) as info:
        cf.Job.attach("job-19990101-000000-abcd", backend=backend)
    assert first.id in str(info.value) and second.id in str(info.value)
    assert isinstance(info.value, KeyError)
    with pytest.raises(cf.ConfigError, match="not valid"):
        cf.Job.attach("../etc", backend=backend)


def test_no_jobs_yet(tmp_path):
    assert cf.jobs(f"local://{tmp_path}") == []
    with pytest.raises(cf.JobNotFound, match="known jobs: none"):
        cf.Job.attach("job-x", backend=f"local://{tmp_path}")


def test_delete_removes_everything_including_spilled_inputs(tmp_path):
    backend = local_backend(tmp_path / "b", max_message_bytes=1000)
    keep = cf.submit(square, [1], backend=backend)
    job = cf.submit(len, [b"x" * 2000, b"y"], backend=backend, chunk_size=1)
    drain(backend)
    stored = keys(backend, job)
    assert any("/inputs/" in key for key in stored) and any("/results/" in k for k in stored)
    assert job.delete() == len(stored)
    assert keys(backend, job) == []
    assert [j.id for j in cf.jobs(backend)] == [keep.id]
    with pytest.raises(cf.JobNotFound):
        job.status()


# --- script and command modes ---------------------------------------------------------


def test_script_mode(backend, tmp_path):
    script = tmp_path / "runme.py"
    script.write_text(
        "import math\n"
        "print('task', i)\n"
        "if i == 2:\n"
        "    raise KeyError(name)\n"
        "if i != 3:\n"
        "    result = {'i': i, 'root': math.sqrt(i), 'name': name}\n"
        "if __name__ == '__main__':\n"
        "    result = 'main ran'\n"
    )
    envs = tmp_path / "envs.csv"
    envs.write_text("i,name\n0,zero\n1,one\n2,two\n3,three\n")
    job = cf.submit_script(script, envs, backend=backend, retries=0, chunk_size=3)
    assert backend.store.get(layout.script(job.id)).decode() == script.read_text()
    assert job.manifest["kind"] == "script" and job.manifest["label"] == "runme.py"
    drain(backend)
    got = job.results(errors="return")
    assert got[0] == {"i": 0, "root": 0.0, "name": "zero"}
    assert got[1] == {"i": 1, "root": 1.0, "name": "one"}
    assert type(got[2].exception) is KeyError and got[3] is None
    assert "raise KeyError(name)" in job.failures()[0].traceback  # the script's own line
    assert job.logs(1) == "task 1\n"


def test_script_mode_with_env_dicts(backend, tmp_path):
    script = tmp_path / "s.py"
    script.write_text("result = a + b\n")
    job = cf.submit_script(str(script), [{"a": 1, "b": 2}, {"a": "x", "b": "y"}], backend=backend)
    drain(backend)
    assert job.results() == [3, "xy"]


def test_a_script_with_a_syntax_error_is_refused(backend, tmp_path):
    script = tmp_path / "bad.py"
    script.write_text("x = 1\nif x\n")
    with pytest.raises(cf.ConfigError, match="line 2"):
        cf.submit_script(script, [{"i": 1}], backend=backend)
    assert list(backend.store.list()) == []


def test_command_mode_shell_line(backend):
    job = cf.submit_command(
        "echo value=$i; echo note $i >&2", [{"i": 1}, {"i": "two"}], backend=backend
    )
    assert job.manifest["kind"] == "command"
    drain(backend)
    assert job.results() == [cf.CommandResult(0, "value=1\n"), cf.CommandResult(0, "value=two\n")]
    assert "note two" in job.logs(1) and "value=two" in job.logs(1)


def test_command_mode_argv_and_a_failing_command(backend):
    script = 'echo out $N; echo "problem with $N" >&2; [ "$N" != 2 ] || exit 3'
    envs = [{"N": n} for n in range(4)]
    job = cf.submit_command(["sh", "-c", script], envs, backend=backend, retries=1)
    drain(backend)
    got = job.results(errors="return")
    assert got[0] == cf.CommandResult(0, "out 0\n")
    failure = got[2]
    assert type(failure.exception) is cf.CommandFailed
    assert failure.exception.exit_code == 3 and failure.exception.stdout == "out 2\n"
    assert "exited with code 3" in str(failure.exception)
    assert "problem with 2" in str(failure.exception)
    (info,) = job.failures()
    assert info.type_name == "cheerful.errors.CommandFailed" and info.attempts == 2
    assert "problem with 2" in job.logs(2)


def test_a_command_killed_by_a_signal(backend):
    job = cf.submit_command("kill -9 $$", [{"i": 1}], backend=backend, retries=0)
    drain(backend)
    with pytest.raises(cf.JobFailed) as info:
        job.results()
    assert "killed by signal 9" in str(info.value.__cause__)


def test_command_mode_envs_from_a_file(backend, tmp_path):
    envs = tmp_path / "envs.jsonl"
    envs.write_text('{"WHO": "world", "N": 3}\n\n{"WHO": "you", "N": 1.5}\n')
    job = cf.submit_command('printf "%s %s" "$WHO" "$N"', envs, backend=backend)
    drain(backend)
    assert [r.stdout for r in job.results()] == ["world 3", "you 1.5"]


@pytest.mark.parametrize(
    ("counts", "state"),
    [
        (dict(queued=3), "queued"),
        (dict(queued=2, running=1), "running"),
        (dict(queued=2, done=1), "waiting"),
        (dict(done=3), "done"),
        (dict(done=2, failed=1), "failed"),
        (dict(done=2, dead=1), "failed"),
        (dict(queued=3, cancelled=True), "cancelled"),
    ],
)
def test_a_job_status_names_its_state_in_one_word(counts, state):
    fields = dict(total=3, queued=0, running=0, done=0, failed=0, dead=0, cancelled=False)
    assert JobStatus(**{**fields, **counts}).state == state


def test_a_job_stored_with_another_layout_is_refused_with_what_to_do(tmp_path) -> None:
    with open_backend(f"local://{tmp_path}/backend") as backend:
        old = {"v": 1, "id": "old-1", "tasks": 1, "versions": {"cheerful": "0.1.0"}}
        backend.store.put(layout.manifest("old-1"), json.dumps(old).encode())
        with pytest.raises(cf.ConfigError, match=r"layout v1 by cheerful 0\.1\.0"):
            cf.Job.attach("old-1", backend=backend)
