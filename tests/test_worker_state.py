"""The durable worker's decisions, driven with events and a fake clock: no I/O, no sleeps."""

from __future__ import annotations

import pickle

import pytest

from cheerful.durable.messages import ChunkMessage
from cheerful.durable.worker.events import (
    CheckIdle,
    Config,
    DeadLetter,
    Delete,
    Delivery,
    Exit,
    Extend,
    JobSpec,
    Kill,
    Record,
    Release,
    Run,
)
from cheerful.durable.worker.state import (
    INTERRUPTION_GRACE_S,
    LONGEST_SETTLE_CHECK_S,
    SETTLE_CHECK_S,
    WorkerState,
)
from cheerful.errors import TaskTimeout
from cheerful.serialize import dumps, rebuild_exception
from cheerful.task import ChunkResult, ErrorInfo

JOB = JobSpec("job-1", tasks=100, seed=7, retries=2)


def message(chunk: int = 0, indices=(0, 1, 2), job: str = "job-1") -> ChunkMessage:
    return ChunkMessage(job, chunk, tuple(indices), inputs=dumps([f"in{i}" for i in indices]))


def delivery(chunk: int = 0, indices=(0, 1, 2), job: JobSpec = JOB, **facts) -> Delivery:
    m = message(chunk, indices, job.id)
    return Delivery(f"r{chunk}", m, job, inputs=m.inputs or b"", **facts)


def of(kind, actions):
    return [a for a in actions if isinstance(a, kind)]


def ok(run: Run, skip=()) -> ChunkResult:
    """Every task of ``run`` succeeded (value 10*i) except those in ``skip``, which raised."""
    errors = {i: error(i) for i in run.indices if i in skip}
    values = [None if i in skip else 10 * i for i in run.indices]
    return ChunkResult(run.indices, values, errors, 0.01)


def error(index: int) -> ErrorInfo:
    return ErrorInfo.from_exception(ValueError(f"bad {index}"), dumps)


def worker(slots: int = 2, **config) -> WorkerState:
    return WorkerState(Config(slots, **config), now=0.0)


# --- taking messages --------------------------------------------------------------------


def test_a_received_chunk_runs_on_a_slot_with_first_attempts():
    w = worker()
    (run,) = w.received(0.0, [delivery()])
    assert isinstance(run, Run)
    assert run.indices == (0, 1, 2) and run.attempts == (1, 1, 1)
    assert run.job == JOB and run.receipt == "r0"


def test_wants_as_many_messages_as_free_slots():
    w = worker(slots=3)
    assert w.wants(0.0) == 3
    w.received(0.0, [delivery(0), delivery(1)])
    assert w.wants(0.0) == 1


def test_chunks_are_held_in_reserve_only_while_they_run_short():
    w = worker(slots=1, prefetch=1)
    assert w.wants(0.0) == 1  # how long chunks take is not known yet: none in reserve
    (run,) = w.received(0.0, [delivery(0)])
    w.done(2.0, run.work_id, ok(run), {})
    w.settled(2.0, "r0")
    assert w.wants(2.0) == 2  # a 2 s chunk: one more held in reserve
    (run,) = w.received(2.0, [delivery(1)])
    w.done(200.0, run.work_id, ok(run), {})
    w.settled(200.0, "r1")
    assert w.wants(200.0) == 1  # long chunks: a reserve would keep tasks from idle workers


def test_more_chunks_than_slots_wait_for_a_slot():
    w = worker(slots=1, prefetch=1)
    actions = w.received(0.0, [delivery(0), delivery(1)])
    (first,) = of(Run, actions)
    assert first.receipt == "r0"
    actions = w.done(1.0, first.work_id, ok(first), {})
    (second,) = of(Run, actions)
    assert second.receipt == "r1"
    assert of(Record, actions)[0].receipt == "r0"


@pytest.mark.parametrize(
    ("facts", "kind", "reason"),
    [
        ({"message": None, "problem": "not JSON"}, DeadLetter, "malformed message: not JSON"),
        ({"job": None}, DeadLetter, "job 'job-1' not found"),
        ({"cancelled": True}, Delete, "job cancelled"),
        ({"recorded": True}, Delete, "result already stored"),
    ],
)
def test_messages_that_must_not_run(facts, kind, reason):
    w = worker()
    base = delivery()
    d = Delivery(
        base.receipt,
        facts.get("message", base.message),
        facts.get("job", base.job),
        problem=facts.get("problem", ""),
        cancelled=facts.get("cancelled", False),
        recorded=facts.get("recorded", False),
    )
    (action,) = w.received(0.0, [d])
    assert isinstance(action, kind)
    assert reason in action.reason
    assert w.wants(0.0) == 2  # nothing is held


def test_task_indices_out_of_the_job_are_dead_lettered():
    w = worker()
    (action,) = w.received(0.0, [delivery(indices=(98, 99, 100))])
    assert isinstance(action, DeadLetter) and "out of range" in action.reason


def test_a_worker_for_one_job_releases_a_message_of_another_job():
    # it receives from its job's queue group only: such a message was sent in the wrong one
    w = worker(job="job-1")
    other = JobSpec("job-2", tasks=100)
    (action,) = w.received(5.0, [delivery(0, job=other)])
    assert action == Release(("r0",), "another job's message")
    assert w.wants(5.0) == 2  # nothing held, no pause
    w.received(5.0, [delivery(5, indices=(50,))])
    assert w.wants(5.0) == 1


# --- retries ----------------------------------------------------------------------------


def test_a_failing_task_is_retried_in_place_then_recorded_failed():
    w = worker()
    (run,) = w.received(0.0, [delivery()])
    actions = w.done(1.0, run.work_id, ok(run, skip={1}), {1: "log-1.1"})
    (retry,) = of(Run, actions)
    assert retry.indices == (1,) and retry.attempts == (2,)
    (retry,) = of(Run, w.done(2.0, retry.work_id, ok(retry, skip={1}), {1: "log-1.2"}))
    assert retry.attempts == (3,)  # retries=2: three attempts in all
    actions = w.done(3.0, retry.work_id, ok(retry, skip={1}), {1: "log-1.3"})
    assert not of(Run, actions)
    (record,) = of(Record, actions)
    assert record.result.values == [0, None, 20]
    assert set(record.result.errors) == {1}
    assert record.attempts == {1: 3}
    assert record.logs == {1: "log-1.3"}


def test_a_retry_that_succeeds_records_the_value_and_its_attempt():
    w = worker()
    (run,) = w.received(0.0, [delivery()])
    (retry,) = of(Run, w.done(1.0, run.work_id, ok(run, skip={2}), {}))
    (record,) = of(Record, w.done(2.0, retry.work_id, ok(retry), {}))
    assert record.result.values == [0, 10, 20]
    assert record.result.errors == {}
    assert record.attempts == {2: 2}


def test_the_record_names_the_log_of_the_last_attempt_only():
    w = worker()
    (run,) = w.received(0.0, [delivery(indices=(0, 1))])
    (retry,) = of(Run, w.done(1.0, run.work_id, ok(run, skip={0, 1}), {0: "a.1", 1: "b.1"}))
    (record,) = of(Record, w.done(2.0, retry.work_id, ok(retry), {1: "b.2"}))
    assert record.logs == {1: "b.2"}  # task 0's second attempt printed nothing


def test_no_retries_means_one_attempt():
    w = worker()
    job = JobSpec("job-1", tasks=10, retries=0)
    (run,) = w.received(0.0, [delivery(job=job)])
    (record,) = of(Record, w.done(1.0, run.work_id, ok(run, skip={0}), {}))
    assert set(record.result.errors) == {0} and record.attempts == {}


# --- crashes and timeouts ---------------------------------------------------------------


def test_a_crash_is_pinned_on_its_task_and_the_others_run_again():
    w = worker()
    job = JobSpec("job-1", tasks=10, retries=0)
    (run,) = w.received(0.0, [delivery(indices=(0, 1, 2, 3), job=job)])
    actions = w.crashed(1.0, run.work_id, 2, "killed by SIGSEGV", signal="SIGSEGV", log="L")
    (again,) = of(Run, actions)
    assert again.indices == (0, 1, 3) and again.attempts == (1, 1, 1)
    (record,) = of(Record, w.done(2.0, again.work_id, ok(again), {}))
    assert record.result.values == [0, 10, None, 30]
    crash = record.result.errors[2]
    assert crash.type_name == "cheerful.errors.WorkerCrashed"
    assert "SIGSEGV" in crash.message
    assert rebuild_exception(crash, 2).signal == "SIGSEGV"
    assert record.logs == {2: "L"}


def test_a_crashing_task_counts_attempts_like_a_raise():
    w = worker()
    (run,) = w.received(0.0, [delivery(indices=(5,))])
    for attempt in (2, 3):
        (run,) = of(Run, w.crashed(1.0, run.work_id, 5, "exited with code 3", exitcode=3))
        assert run.attempts == (attempt,)
    (record,) = of(Record, w.crashed(2.0, run.work_id, 5, "exited with code 3", exitcode=3))
    assert record.attempts == {5: 3}
    assert "exited with code 3" in record.result.errors[5].message


def test_a_slot_that_dies_before_its_first_task_blames_no_one_at_first():
    w = worker()
    (run,) = w.received(0.0, [delivery()])
    for _ in range(2):
        (run,) = of(Run, w.crashed(1.0, run.work_id, None, "killed by SIGKILL"))
        assert run.indices == (0, 1, 2) and run.attempts == (1, 1, 1)
    (run, retry) = of(Run, w.crashed(1.0, run.work_id, None, "killed by SIGKILL"))
    assert run.indices == (1, 2) and retry.indices == (0,) and retry.attempts == (2,)


def test_a_task_over_its_timeout_is_killed_and_fails_with_task_timeout():
    w = worker()
    job = JobSpec("job-1", tasks=10, retries=0, timeout=5.0)
    (run,) = w.received(0.0, [delivery(indices=(0, 1, 2), job=job)])
    assert not of(Kill, w.tick(4.0, {run.work_id: (1, 0.5)}))
    (kill,) = of(Kill, w.tick(6.0, {run.work_id: (1, 0.5)}))
    assert kill.work_id == run.work_id
    assert not of(Kill, w.tick(6.1, {run.work_id: (1, 0.5)}))  # asked once
    (again,) = of(Run, w.crashed(6.2, run.work_id, 1, "killed by SIGKILL", signal="SIGKILL"))
    assert again.indices == (0, 2)
    (record,) = of(Record, w.done(7.0, again.work_id, ok(again), {}))
    err = record.result.errors[1]
    assert err.type_name == "TaskTimeout" or err.type_name.endswith("TaskTimeout")
    exc = rebuild_exception(err, 1)
    assert isinstance(exc, TaskTimeout) and "timeout of 5 s" in str(exc)


def test_a_kill_that_lands_on_the_next_task_blames_no_one():
    w = worker()
    job = JobSpec("job-1", tasks=10, retries=0, timeout=5.0)
    (run,) = w.received(0.0, [delivery(indices=(0, 1), job=job)])
    w.tick(6.0, {run.work_id: (0, 0.0)})
    (again,) = of(Run, w.crashed(6.1, run.work_id, 1, "killed by SIGKILL"))
    assert again.indices == (0, 1) and again.attempts == (1, 1)


def test_a_timeout_retries_like_any_failure():
    w = worker()
    job = JobSpec("job-1", tasks=10, retries=1, timeout=1.0)
    (run,) = w.received(0.0, [delivery(indices=(3,), job=job)])
    w.tick(2.0, {run.work_id: (3, 0.0)})
    (retry,) = of(Run, w.crashed(2.1, run.work_id, 3, "killed"))
    assert retry.attempts == (2,)


# --- heartbeats -------------------------------------------------------------------------


def test_held_messages_are_extended_every_third_of_the_visibility():
    w = worker(visibility=30.0)
    w.received(1.0, [delivery(0), delivery(1)])
    assert not of(Extend, w.tick(9.9))
    (extend,) = of(Extend, w.tick(10.0))
    assert extend == Extend(("r0", "r1"), 30.0)
    assert not of(Extend, w.tick(19.9))
    assert of(Extend, w.tick(20.0))


def test_nothing_held_means_no_extend():
    assert not of(Extend, worker().tick(100.0))


def test_stale_receipts_are_no_longer_extended():
    w = worker(visibility=3.0)
    w.received(0.0, [delivery(0), delivery(1)])
    w.lost(["r0"])
    (extend,) = of(Extend, w.tick(1.0))
    assert extend.receipts == ("r1",)


def test_a_chunk_being_recorded_is_still_extended_until_settled():
    w = worker(visibility=3.0)
    (run,) = w.received(0.0, [delivery()])
    w.done(0.5, run.work_id, ok(run), {})
    assert of(Extend, w.tick(1.0))[0].receipts == ("r0",)
    w.settled(1.5, "r0")
    assert not of(Extend, w.tick(2.0))


# --- stopping ---------------------------------------------------------------------------


def test_stop_releases_work_not_started_and_lets_running_chunks_finish():
    w = worker(slots=1, prefetch=1, grace=30.0)
    (run,) = of(Run, w.received(0.0, [delivery(0), delivery(1)]))
    actions = w.stop(1.0)
    assert actions == [Release(("r1",), "worker stopping")]
    assert w.wants(1.0) == 0
    actions = w.done(2.0, run.work_id, ok(run), {})
    assert of(Record, actions) and not of(Run, actions)
    assert w.settled(2.1, "r0") == [Exit("stopped")]


def test_retries_of_a_running_chunk_go_on_while_stopping():
    w = worker(grace=30.0)
    (run,) = w.received(0.0, [delivery()])
    w.stop(1.0)
    (retry,) = of(Run, w.done(2.0, run.work_id, ok(run, skip={0}), {}))
    assert retry.indices == (0,)


def test_grace_expiry_kills_and_releases_running_work():
    w = worker(grace=10.0)
    (run,) = w.received(0.0, [delivery()])
    w.stop(1.0)
    assert not of(Exit, w.tick(10.9))
    actions = w.tick(11.0)
    assert actions == [
        Kill(run.work_id, "grace expired", run),
        Release(("r0",), "grace expired"),
        Exit("grace expired"),
    ]
    assert w.crashed(11.1, run.work_id, 0, "killed") == []  # after the exit: ignored


def test_a_second_stop_releases_at_once():
    w = worker(grace=10.0)
    w.received(0.0, [delivery()])
    w.stop(1.0)
    assert of(Exit, w.stop(1.5)) == [Exit("grace expired")]


def test_stop_with_nothing_held_exits_at_once():
    assert worker().stop(0.0) == [Exit("stopped")]


# --- spot notices -----------------------------------------------------------------------


def test_an_interruption_gives_running_chunks_a_short_grace_then_releases_them():
    w = worker(slots=1, prefetch=1, grace=30.0)
    (run,) = of(Run, w.received(0.0, [delivery(0), delivery(1)]))
    assert w.notice(1.0, "interruption") == [Release(("r1",), "worker leaving (spot interruption)")]
    assert w.wants(1.0) == 0
    assert not of(Kill, w.tick(1.0 + INTERRUPTION_GRACE_S - 0.1))
    assert w.tick(1.0 + INTERRUPTION_GRACE_S) == [
        Kill(run.work_id, "spot interruption", run),
        Release(("r0",), "spot interruption"),
        Exit("spot interruption"),
    ]


def test_an_interruption_grace_is_never_longer_than_the_configured_one():
    w = worker(grace=2.0)
    w.received(0.0, [delivery()])
    w.notice(1.0, "interruption")
    assert of(Exit, w.tick(3.0)) == [Exit("spot interruption")]


def test_an_interruption_shortens_a_stop_under_way_and_keeps_its_reason():
    w = worker(grace=300.0)
    w.received(0.0, [delivery()])
    w.stop(1.0)
    w.notice(2.0, "interruption")
    assert of(Exit, w.tick(2.0 + INTERRUPTION_GRACE_S)) == [Exit("spot interruption")]
    w = worker(grace=300.0)
    w.received(0.0, [delivery()])
    w.notice(1.0, "interruption")
    assert w.notice(2.0, "interruption") == []  # a repeat changes nothing
    assert of(Exit, w.stop(3.0)) == [Exit("spot interruption")]  # a stop: at once


def test_chunks_that_finish_within_the_interruption_grace_are_recorded():
    w = worker(grace=30.0)
    (run,) = w.received(0.0, [delivery()])
    w.notice(1.0, "interruption")
    (record,) = of(Record, w.done(2.0, run.work_id, ok(run), {}))
    assert record.receipt == "r0"
    assert w.settled(2.1, "r0") == [Exit("spot interruption")]


def test_an_interruption_with_no_grace_releases_at_once():
    w = worker(grace=0.0)
    (run,) = w.received(0.0, [delivery()])
    assert w.notice(1.0, "interruption") == [
        Kill(run.work_id, "spot interruption", run),
        Release(("r0",), "spot interruption"),
        Exit("spot interruption"),
    ]


def test_a_rebalance_takes_no_new_work_and_leaves_when_running_chunks_are_done():
    w = worker(slots=1, prefetch=1, grace=1.0)
    (run,) = of(Run, w.received(0.0, [delivery(0), delivery(1)]))
    assert w.notice(1.0, "rebalance") == [Release(("r1",), "worker leaving (rebalance)")]
    assert w.wants(1.0) == 0
    assert not of(Kill, w.tick(1000.0))  # no deadline: the chunk finishes however long
    (retry,) = of(Run, w.done(1001.0, run.work_id, ok(run, skip={1}), {}))
    assert retry.indices == (1,)  # retries of a running chunk still run
    assert of(Record, w.done(1002.0, retry.work_id, ok(retry), {}))
    assert w.settled(1002.1, "r0") == [Exit("rebalance")]


def test_a_message_received_as_the_worker_leaves_is_released():
    w = worker(slots=2)
    w.received(0.0, [delivery(0)])
    w.notice(1.0, "rebalance")
    assert w.received(1.5, [delivery(1)]) == [Release(("r1",), "worker leaving (rebalance)")]


def test_after_a_rebalance_an_interruption_or_a_stop_still_apply():
    w = worker(grace=30.0)
    w.received(0.0, [delivery()])
    w.notice(1.0, "rebalance")
    w.notice(2.0, "interruption")
    assert of(Exit, w.tick(2.0 + INTERRUPTION_GRACE_S)) == [Exit("spot interruption")]
    w = worker(grace=30.0)
    w.received(0.0, [delivery()])
    w.notice(1.0, "rebalance")
    w.stop(2.0)
    assert of(Exit, w.tick(32.0)) == [Exit("grace expired")]
    w = worker(grace=30.0)
    w.received(0.0, [delivery()])
    w.stop(1.0)
    assert w.notice(2.0, "rebalance") == []  # the stop goes on, with its grace


def test_a_notice_with_nothing_held_exits_at_once():
    assert worker().notice(0.0, "interruption") == [Exit("spot interruption")]
    assert worker().notice(0.0, "rebalance") == [Exit("rebalance")]
    with pytest.raises(ValueError, match="notice kind"):
        worker().notice(0.0, "reboot")


# --- idle exit --------------------------------------------------------------------------


def test_idle_exit_after_the_queue_had_nothing_for_that_long():
    w = worker(idle_exit=60.0)
    assert not w.tick(100.0)  # the queue was not asked yet
    w.received(110.0, [])
    assert not w.tick(169.9)
    assert w.tick(170.0) == [CheckIdle()]  # first: is anything still out?
    assert not w.tick(171.0)  # one question at a time
    assert w.idle_checked(172.0, pending=False, settled=False) == [Exit("idle")]


def test_no_idle_exit_while_messages_are_out_in_other_hands():
    """A dead worker's chunk comes back one visibility period later: an idle worker waits
    for it rather than leave the job with no worker."""
    w = worker(idle_exit=60.0)
    w.received(0.0, [])
    assert w.tick(60.0) == [CheckIdle()]
    assert w.idle_checked(60.0, pending=True, settled=False) == []
    assert not w.tick(119.9)  # one more idle period
    assert w.tick(120.0) == [CheckIdle()]
    assert w.idle_checked(120.0, pending=False, settled=False) == [Exit("idle")]


def test_a_worker_of_one_job_leaves_once_the_job_is_settled():
    w = worker(idle_exit=600.0, job="job-1")
    (run,) = w.received(0.0, [delivery()])
    w.done(1.0, run.work_id, ok(run), {})
    w.settled(1.0, "r0")
    w.received(1.5, [])
    assert w.tick(1.6) == [CheckIdle()]
    assert w.idle_checked(1.6, pending=False, settled=False) == []  # another chunk is out
    assert not w.tick(1.6 + SETTLE_CHECK_S - 0.1)
    assert w.tick(1.6 + SETTLE_CHECK_S) == [CheckIdle()]
    assert w.idle_checked(4.0, pending=False, settled=True) == [Exit("job settled")]


def test_work_resets_the_idle_clock():
    w = worker(idle_exit=60.0)
    (run,) = w.received(50.0, [delivery()])
    assert not of(Exit, w.tick(70.0))
    w.done(80.0, run.work_id, ok(run), {})
    w.settled(80.0, "r0")
    w.received(81.0, [])
    assert not w.tick(140.0)
    assert w.tick(141.0) == [CheckIdle()]
    assert w.idle_checked(141.0, pending=False, settled=False) == [Exit("idle")]


def test_only_other_jobs_messages_count_as_idle():
    w = worker(idle_exit=5.0, job="job-1")
    w.received(1.0, [delivery(job=JobSpec("job-2", tasks=10))])
    for now in (1.5, 3.5):  # a worker of one job asks now and then if it is settled
        assert w.tick(now) == [CheckIdle()]
        assert w.idle_checked(now, pending=False, settled=False) == []
    assert not w.tick(5.9)
    assert w.tick(6.0) == [CheckIdle()]
    assert w.idle_checked(6.0, pending=False, settled=False) == [Exit("idle")]


def test_an_idle_worker_of_one_job_asks_ever_less_often():
    w = worker(job="job-1")
    w.received(0.0, [])
    asked, now = [], 0.0
    while now < 300.0:
        if w.tick(now) == [CheckIdle()]:
            asked.append(now)
            w.idle_checked(now, pending=True, settled=False)
        now = round(now + 0.5, 1)
    waits = [b - a for a, b in zip(asked[:-1], asked[1:], strict=True)]
    assert waits[:3] == [SETTLE_CHECK_S, 2 * SETTLE_CHECK_S, 4 * SETTLE_CHECK_S]
    assert max(waits) == LONGEST_SETTLE_CHECK_S  # and no longer: a job retried is seen


def test_no_idle_exit_without_the_option():
    w = worker()
    w.received(0.0, [])
    assert not w.tick(1e9)


def test_actions_and_results_pickle():
    w = worker()
    (run,) = w.received(0.0, [delivery()])
    (record,) = of(Record, w.done(1.0, run.work_id, ok(run), {}))
    assert pickle.loads(pickle.dumps(record)).result.values == [0, 10, 20]


def test_at_its_stop_time_a_worker_winds_down_and_leaves_for_its_budget():
    w = WorkerState(Config(slots=1, grace=5.0, stop_at=100.0), 0.0)
    (run,) = w.received(1.0, [delivery(), delivery(chunk=1)])
    assert not of(Release, w.tick(99.0))
    releases = of(Release, w.tick(100.0))  # the chunk not started goes back at once
    assert [r.receipts for r in releases] == [("r1",)] and w.wants(100.0) == 0
    w.done(101.0, run.work_id, ok(run), {})
    assert of(Exit, w.settled(101.0, "r0")) == [Exit("budget")]
