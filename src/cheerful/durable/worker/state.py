"""The durable worker's decisions, as a pure state machine: events in, actions out.

The I/O loop (:mod:`cheerful.durable.worker.loop`) feeds :class:`WorkerState` with what happened
(messages received with the facts it looked up, a chunk done or crashed, the clock
ticked, a stop was asked) and carries out the actions it returns. Nothing here reads a
clock, a queue or a store: time arrives as ``now`` (monotonic seconds), so tests drive a
worker through hours in microseconds.

What it decides:

- which received message runs, and which is dead-lettered (malformed, unknown job, task
  out of range), deleted (job cancelled, result already stored) or released (another
  job's, when the worker serves one job: it receives from that job's queue group, so only
  a message sent in the wrong group gets here);
- which tasks run on which free slot: a chunk first, then its retries and the tasks a
  crash interrupted;
- per task: a raise, a crash or a timeout is one failed attempt; a task is tried up to
  ``retries + 1`` times; a crash pinned on a task re-runs the chunk's other tasks without
  counting an attempt for them;
- heartbeats (one batched extend every ``visibility / 3``), timeouts (kill the slot),
  recording a finished chunk, a graceful stop (release work not started, let running
  chunks finish within ``grace``, then release them too);
- leaving: idle for ``idle_exit`` seconds once no message of its jobs is out in other
  hands (:class:`CheckIdle`); with one job, once it is settled; on :meth:`WorkerState.fail`;
- EC2 spot notices (:meth:`WorkerState.notice`): an interruption is a stop whose grace is
  at most :data:`INTERRUPTION_GRACE_S`; a rebalance recommendation stops receiving and
  leaves once the chunks held have finished, with no time limit.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

from cheerful.pool import MAX_START_CRASHES
from cheerful.task import ChunkResult, ErrorInfo

from .events import (
    Action,
    CheckIdle,
    Config,
    DeadLetter,
    Delete,
    Delivery,
    Exit,
    Extend,
    Kill,
    Record,
    Release,
    Run,
)
from .failures import crash_error, missing_outcome, timeout_error
from .held import HeldChunk, note_log, out_of_range, unzip

__all__ = [
    "INTERRUPTION_GRACE_S",
    "JOB_SETTLED",
    "LONGEST_SETTLE_CHECK_S",
    "NOTICE_KINDS",
    "PREFETCH_UNDER_S",
    "SETTLE_CHECK_S",
    "WorkerState",
]

SETTLE_CHECK_S = 2.0
"""While a worker serving one job has nothing to do, how often it asks whether that job is
settled (then it leaves)."""
LONGEST_SETTLE_CHECK_S = 60.0
"""A worker of one job asks whether it is settled after :data:`SETTLE_CHECK_S`, then ever
less often (twice the wait each time, times its own jitter) up to this: thousands of idle
workers must not all list the job's results at once."""
PREFETCH_UNDER_S = 10.0
"""Chunks are taken in reserve (``prefetch``) only while they run shorter than this: a long
chunk held in reserve would keep its tasks from idle workers elsewhere."""

INTERRUPTION_GRACE_S = 10.0
"""Longest grace running chunks get after a spot interruption notice (``grace`` if less):
well under the notice's two minutes (it is seen up to a poll late; then the worker still
kills slots, releases messages and writes its counters). Released at once, a chunk runs
again elsewhere within seconds; held by a vanished instance, only after its visibility."""
NOTICE_KINDS = ("interruption", "rebalance")
"""The kinds of :meth:`WorkerState.notice` (as :class:`cheerful.durable.worker.spot.SpotNotice`)."""
SPOT_INTERRUPTION, JOB_SETTLED, BUDGET = "spot interruption", "job settled", "budget"
REBALANCE = "rebalance"
GRACE_EXPIRED = "grace expired"


# --- the state --------------------------------------------------------------------------


class WorkerState:
    """Everything a worker holds and decides; see the module docstring."""

    def __init__(self, config: Config, now: float) -> None:
        self.config = config
        self.chunks: dict[str, HeldChunk] = {}  # by receipt, in arrival order
        self.runs: dict[int, Run] = {}
        self.kills: dict[int, int | None] = {}  # work_id -> the index that overran
        self.leaving: str | None = None  # the reason to exit once nothing is held
        self.deadline: float | None = None  # when running chunks are killed and released
        self.exited: str | None = None
        self._ids = itertools.count(1)
        self._last_extend = now
        self._idle_since: float | None = None  # set by the first receive that finds nothing
        self._checking_idle = False  # a CheckIdle is out: wait for idle_checked
        self._next_settle_check = now
        self._settle_wait = SETTLE_CHECK_S
        self._chunk_s: float | None = None  # how long chunks take here (a moving average)

    # Queries.

    def wants(self, now: float) -> int:
        """How many messages to receive now (0 while stopping or leaving). Chunks are held
        in reserve only once the ones run so far were short (:data:`PREFETCH_UNDER_S`)."""
        if self.leaving is not None or self.exited:
            return 0
        quick = self._chunk_s is not None and self._chunk_s < PREFETCH_UNDER_S
        reserve = self.config.prefetch if quick else 0
        return max(0, self.config.slots + reserve - len(self.chunks))

    def running_tasks(self, job: str) -> int:
        """Tasks of ``job`` in chunks that started and are not recorded yet."""
        return sum(
            len(c.message.indices)
            for c in self.chunks.values()
            if c.job.id == job and c.started and not c.recording
        )

    def running_chunks(self) -> list[tuple[str, int, tuple[int, ...], float, int, set[int]]]:
        """``(job, chunk, tasks, started, attempt, runs)`` of each chunk running (``started``
        on the clock of ``now``; ``attempt`` the highest of its tasks'; ``runs`` the work
        ids running its tasks)."""
        return [
            (c.job.id, c.message.chunk, tuple(c.message.indices[:20]), c.since,
             max([*c.attempts.values(), *(a for r in c.runs for a in self.runs[r].attempts)], default=1),
             set(c.runs))
            for c in self.chunks.values()
            if c.started and not c.recording
        ]  # fmt: skip

    def held(self) -> tuple[str, ...]:
        """Receipts of every message held now."""
        return tuple(self.chunks)

    # Events.

    def received(self, now: float, deliveries: list[Delivery]) -> list[Action]:
        """Messages came back from a receive (an empty list: the queue had none)."""
        actions: list[Action] = []
        for delivery in deliveries:
            verdict = self._verdict(delivery)
            if verdict is None and self.leaving is not None:  # received as the stop came
                verdict = Release((delivery.receipt,), f"worker leaving ({self.leaving})")
            if verdict is None:
                self._accept(delivery)
                self._idle_since = None
            else:
                actions.append(verdict)
        if not self.chunks and self._idle_since is None:
            self._idle_since = now
        return actions + self._dispatch(now)

    def done(
        self, now: float, work_id: int, result: ChunkResult, logs: Mapping[int, str]
    ) -> list[Action]:
        """Run ``work_id`` finished: ``result`` has its values and errors, ``logs`` the store
        key of each task's log of this attempt."""
        run = self.runs.pop(work_id, None)
        self.kills.pop(work_id, None)
        if run is None or self.exited:
            return []
        chunk = self.chunks[run.receipt]
        if result.unloadable:  # its inputs do not decode: no task can ever run from it
            return self._reject(chunk, result, now)
        chunk.runs.discard(work_id)
        chunk.seconds += result.seconds
        chunk.seconds_each.update(getattr(result, "seconds_each", None) or {})
        values = dict(zip(result.indices, result.values, strict=True))
        retry = []
        for index, attempt in zip(run.indices, run.attempts, strict=True):
            chunk.attempts[index] = attempt
            note_log(chunk, index, logs.get(index, ""))
            error = result.errors.get(index) if index in values else missing_outcome(index)
            if error is None:
                chunk.values[index] = values[index]
                chunk.errors.pop(index, None)
            elif self._failed(chunk, index, attempt, error):
                retry.append((index, attempt + 1))
        if retry:
            chunk.todo.append(unzip(retry))
        return self._progress(chunk, now)

    def crashed(
        self,
        now: float,
        work_id: int,
        index: int | None,
        reason: str,
        *,
        exitcode: int | None = None,
        signal: str | None = None,
        log: str = "",
    ) -> list[Action]:
        """The slot running ``work_id`` died while running task ``index`` (None: before
        its first task). ``log`` is the store key of that task's log, if one was kept."""
        run = self.runs.pop(work_id, None)
        overran = self.kills.pop(work_id, None)
        if run is None or self.exited:
            return []
        chunk = self.chunks[run.receipt]
        chunk.runs.discard(work_id)
        attempts = dict(zip(run.indices, run.attempts, strict=True))
        blamed = self._blame(chunk, run, index if index in attempts else None, overran)
        others = tuple(i for i in run.indices if i != blamed)
        if others:
            chunk.todo.append((others, tuple(attempts[i] for i in others)))
        if blamed is not None:
            attempt = attempts[blamed]
            chunk.attempts[blamed] = attempt
            note_log(chunk, blamed, log)
            if overran == blamed:
                error = timeout_error(blamed, run.job)
            else:
                error = crash_error(blamed, reason, exitcode, signal)
            if self._failed(chunk, blamed, attempt, error):
                chunk.todo.append(((blamed,), (attempt + 1,)))
        return self._progress(chunk, now)

    def idle_checked(self, now: float, *, pending: bool, settled: bool) -> list[Action]:
        """The loop asked the queue after a :class:`CheckIdle`: ``pending``, messages of
        the jobs served are still queued or held (by workers that may die: they would come
        back); ``settled``, the one job served has an outcome for every task."""
        self._checking_idle = False
        self._next_settle_check = now + self._settle_wait * self.config.jitter
        self._settle_wait = min(LONGEST_SETTLE_CHECK_S, self._settle_wait * 2)
        if self.exited or self.chunks or self.leaving is not None:
            return []
        if settled:
            return self._exit(JOB_SETTLED)
        since, idle = self._idle_since, self.config.idle_exit
        if idle is None or since is None or now - since < idle:
            return []
        if pending:
            self._idle_since = now  # wait one more idle period: they may come back
            return []
        return self._exit("idle")

    def fail(self, now: float, reason: str) -> list[Action]:
        """The worker cannot go on (its store keeps failing): release everything held and
        leave with ``reason`` at once."""
        if self.exited:
            return []
        return self._give_up(reason)

    def settled(self, now: float, receipt: str) -> list[Action]:
        """The loop stored the record of ``receipt``'s chunk and deleted the message."""
        chunk = self.chunks.pop(receipt, None)
        if chunk is not None and chunk.started:
            took = now - chunk.since
            self._chunk_s = took if self._chunk_s is None else 0.7 * self._chunk_s + 0.3 * took
        self._settle_wait = SETTLE_CHECK_S  # work came: ask soon again once idle
        return self._maybe_exit(now)

    def lost(self, receipts: list[str]) -> None:
        """Heartbeats found these receipts stale: another worker holds the message now.
        The chunk goes on (its result is still written first-wins) but is no longer
        extended."""
        for receipt in receipts:
            if receipt in self.chunks:
                self.chunks[receipt].lost = True

    def tick(
        self, now: float, running: Mapping[int, tuple[int, float]] | None = None
    ) -> list[Action]:
        """Time passed. ``running`` maps each busy run to (task index, when it started,
        on the same clock as ``now``)."""
        if self.exited:
            return []
        actions: list[Action] = []
        if self.deadline is not None and now >= self.deadline:
            return self._give_up(self._expired())
        stop_at = self.config.stop_at
        if stop_at is not None and now >= stop_at and self.leaving is None:
            actions += self._wind_down(now, BUDGET, now + self.config.grace)
        if now >= self._last_extend + self.config.heartbeat:
            self._last_extend = now
            receipts = tuple(r for r, c in self.chunks.items() if not c.lost)
            if receipts:
                actions.append(Extend(receipts, self.config.visibility))
        actions += self._overdue(now, running or {})
        actions += self._maybe_exit(now)
        return actions

    def stop(self, now: float, *, force: bool = False) -> list[Action]:
        """Stop taking work: release what has not started; running chunks get ``grace``
        seconds (none with ``force``, or on a second stop)."""
        if self.exited:
            return []
        if force or self.deadline is not None:
            return self._give_up(self._expired())
        return self._wind_down(now, "stopped", now + self.config.grace)

    def notice(self, now: float, kind: str) -> list[Action]:
        """An EC2 spot notice came (``kind`` in :data:`NOTICE_KINDS`).

        "interruption": as :meth:`stop`, but running chunks get at most
        :data:`INTERRUPTION_GRACE_S` seconds (less if ``grace`` is less, or if a stop's
        grace ends sooner); then they are killed and released, and the worker exits with
        "spot interruption". "rebalance": stop receiving, release what has not started,
        let running chunks finish however long they take, then exit with "rebalance".
        Repeated notices change nothing; a stop after a notice works as after a stop.
        """
        if kind not in NOTICE_KINDS:
            raise ValueError(f"notice kind must be one of {NOTICE_KINDS}, not {kind!r}")
        if self.exited:
            return []
        if kind == "rebalance":
            if self.leaving is not None:  # stopping already (or interrupted): that goes on
                return []
            return self._wind_down(now, REBALANCE, None)
        if self.leaving == SPOT_INTERRUPTION:
            return []
        deadline = now + min(self.config.grace, INTERRUPTION_GRACE_S)
        if self.deadline is not None:
            deadline = min(deadline, self.deadline)
        return self._wind_down(now, SPOT_INTERRUPTION, deadline)

    # Decisions.

    def _wind_down(self, now: float, reason: str, deadline: float | None) -> list[Action]:
        """Stop receiving; release what has not started; running chunks go on until
        ``deadline`` (None: until they finish); exit with ``reason`` once nothing is held,
        or as :meth:`_expired` says at the deadline."""
        self.leaving, self.deadline = reason, deadline
        waiting = [r for r, c in self.chunks.items() if not c.started]
        for receipt in waiting:
            del self.chunks[receipt]
        why = "worker stopping" if reason == "stopped" else f"worker leaving ({reason})"
        actions: list[Action] = [Release(tuple(waiting), why)] if waiting else []
        if deadline is not None and now >= deadline and self.chunks:
            return actions + self._give_up(self._expired())  # no grace: release at once
        return actions + self._maybe_exit(now)

    def _verdict(self, d: Delivery) -> Action | None:
        m = d.message
        if m is None:
            return DeadLetter(d.receipt, f"malformed message: {d.problem or 'cannot decode'}")
        if d.job is None:
            why = f": {d.problem}" if d.problem else " (no manifest)"
            return DeadLetter(d.receipt, f"job {m.job!r} not found{why}")
        if d.cancelled:
            return Delete((d.receipt,), "job cancelled")
        if d.problem:
            return DeadLetter(d.receipt, f"cannot run: {d.problem}")
        if self.config.job is not None and m.job != self.config.job:
            return Release((d.receipt,), "another job's message")
        if out_of_range(m.indices, d.job.tasks):
            return DeadLetter(
                d.receipt,
                f"malformed message: task indices out of range 0..{d.job.tasks - 1} or repeated",
            )
        if d.recorded:
            return Delete((d.receipt,), "result already stored")
        return None

    def _blame(self, chunk: HeldChunk, run: Run, index: int | None, overran: int | None):
        """The task a crash is pinned on, or None when no task is to blame."""
        if overran is not None:  # this worker killed it: the overrunning task, if still on
            return index if index == overran else None
        if index is None:
            chunk.start_crashes += 1
            if chunk.start_crashes >= MAX_START_CRASHES:
                return run.indices[0]
        return index

    def _accept(self, d: Delivery) -> None:
        assert d.message is not None and d.job is not None
        chunk = HeldChunk(d.receipt, d.message, d.job, d.inputs, code=d.code)
        indices = tuple(d.message.indices)
        first = d.first_attempts or (1,) * len(indices)
        chunk.first = dict(zip(indices, first, strict=True))
        chunk.todo.append((indices, tuple(first)))
        self.chunks[d.receipt] = chunk

    def _reject(self, chunk: HeldChunk, result: ChunkResult, now: float) -> list[Action]:
        """Dead-letter a held chunk whose message cannot be run, with the slot's reason."""
        for work_id in chunk.runs:
            self.runs.pop(work_id, None)
        del self.chunks[chunk.receipt]
        error = next(iter(result.errors.values()), None)
        why = f"{error.type_name}: {error.message}" if error is not None else "unreadable"
        reason = f"malformed message: its inputs cannot be read: {why}"
        return [DeadLetter(chunk.receipt, reason), *self._dispatch(now)]

    def _failed(self, chunk: HeldChunk, index: int, attempt: int, error: ErrorInfo) -> bool:
        """Note a failed attempt; True when the task gets another one (each delivery of a
        chunk gives a task ``retries + 1`` attempts, numbered on from its earlier ones)."""
        chunk.values.pop(index, None)
        chunk.errors[index] = error
        return attempt < chunk.first.get(index, 1) + chunk.job.retries

    def _progress(self, chunk: HeldChunk, now: float) -> list[Action]:
        actions = self._dispatch(now)
        if not chunk.todo and not chunk.runs and not chunk.recording:
            chunk.recording = True
            actions.append(self._record(chunk))
        return actions

    def _dispatch(self, now: float) -> list[Action]:
        """Give free slots the waiting runs, oldest chunk first."""
        actions: list[Action] = []
        for chunk in self.chunks.values():
            while chunk.todo and len(self.runs) < self.config.slots:
                if self.leaving is not None and not chunk.started:
                    break
                indices, attempts = chunk.todo.popleft()
                run = Run(
                    next(self._ids),
                    chunk.receipt,
                    chunk.job,
                    chunk.message,
                    chunk.inputs,
                    indices,
                    attempts,
                    chunk.code,
                )
                self.runs[run.work_id] = run
                chunk.runs.add(run.work_id)
                chunk.since = chunk.since if chunk.started else now
                chunk.started = True
                actions.append(run)
        return actions

    def _record(self, chunk: HeldChunk) -> Record:
        indices = tuple(chunk.message.indices)
        values = [chunk.values.get(i) for i in indices]
        errors = {i: chunk.errors[i] for i in indices if i in chunk.errors}
        result = ChunkResult(indices, values, errors, chunk.seconds)
        attempts = {i: a for i, a in chunk.attempts.items() if a != 1}
        inline = chunk.inputs if chunk.message.spill is None else b""
        return Record(
            chunk.receipt,
            chunk.job,
            chunk.message.chunk,
            result,
            attempts,
            dict(chunk.logs),
            inline,
            dict(chunk.seconds_each),
        )

    def _overdue(self, now: float, running: Mapping[int, tuple[int, float]]) -> list[Action]:
        actions: list[Action] = []
        for work_id, (index, started) in running.items():
            run = self.runs.get(work_id)
            timeout = run.job.timeout if run is not None else None
            if timeout and work_id not in self.kills and now - started > timeout:
                self.kills[work_id] = index
                actions.append(Kill(work_id, f"task {index} ran longer than {timeout:g} s"))
        return actions

    def _maybe_exit(self, now: float) -> list[Action]:
        if self.exited or self.chunks:
            return []
        if self.leaving is not None:
            return self._exit(self.leaving)
        idle, since = self.config.idle_exit, self._idle_since
        if since is None or self._checking_idle:
            return []
        idle_over = idle is not None and now - since >= idle
        settle_due = self.config.job is not None and now >= self._next_settle_check
        if idle_over or settle_due:
            self._checking_idle = True
            return [CheckIdle()]
        return []

    def _expired(self) -> str:
        """The exit reason when the deadline passes: an interruption's stays one."""
        return SPOT_INTERRUPTION if self.leaving == SPOT_INTERRUPTION else GRACE_EXPIRED

    def _give_up(self, reason: str) -> list[Action]:
        """Time is up: kill what runs, release every held message, leave."""
        actions: list[Action] = [Kill(w, reason, run) for w, run in self.runs.items()]
        receipts = tuple(self.chunks)
        if receipts:
            actions.append(Release(receipts, reason))
        self.chunks.clear()
        self.runs.clear()
        return actions + self._exit(reason)

    def _exit(self, reason: str) -> list[Action]:
        self.exited = reason
        return [Exit(reason)]
