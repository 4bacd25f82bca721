"""The durable worker's I/O loop: queue in, slots run, store out.

:func:`~cheerful.durable.worker.run.run_worker` sets it up; the loop receives chunk messages, looks up
what the decisions need (the job's manifest and code, cancelled or not, result stored or
not, the inputs), runs chunks on a :class:`~cheerful.durable.worker.slots.SlotPool` and carries out what
:class:`~cheerful.durable.worker.state.WorkerState` decides. For each finished chunk it stores the
logs, then the record (first write wins), then its counters, and only then deletes the
message: a worker killed at any instant loses nothing, its messages reappear after the
visibility timeout and run elsewhere.

With a metadata URL (an EC2 instance's), a :class:`~cheerful.durable.worker.spot.SpotWatcher`
polls for spot notices in a thread; each turn hands a new one to the state machine
(:meth:`WorkerState.notice`), which decides how the worker winds down.
"""

from __future__ import annotations

import json
import os
import threading
import time

from cheerful.errors import BackendError, ConfigError, ObjectNotFound, QueueError
from cheerful.pool import Crashed, Done, Work

from .. import layout
from ..counts import settled
from ..files import JobFiles, unpack
from ..messages import ChunkMessage, MalformedMessage
from ..queues.base import BATCH_SIZE, Message
from .events import (
    CheckIdle,
    Config,
    DeadLetter,
    Delete,
    Delivery,
    Extend,
    Kill,
    Record,
    Release,
    Run,
    WorkerSummary,
)
from .jobs import Counters, JobCache
from .logs import TaskLogs
from .node import NODE_EVERY_S, REMOTE_NODE_EVERY_S, TASKS_SHOWN, Usage, heartbeat
from .slots import PackedChunk, SlotPool
from .spot import SpotWatcher
from .state import SPOT_INTERRUPTION, WorkerState
from .storing import STORE_FAILING, ChunkWriter, StoreTrouble, warn

__all__ = ["Loop", "warn"]

POLL_S = 1.0
"""Longest wait for a message while no slot is busy: a stop signal is seen within it."""
REMOTE_POLL_S = 5.0
"""The same on a queue where every request is paid (SQS): fewer empty receives."""
QUIET_S = 1.0
"""While slots are busy and the queue had nothing, the next receive waits this long, twice
as long after each empty one, up to :data:`LONGEST_QUIET_S` (a job's tail is not polled
several times a second by every worker)."""
LONGEST_QUIET_S = 20.0
WAIT_S = 0.2
"""Longest wait for a slot while some are busy (heartbeats, timeouts and stops run between)."""
DELETE_BATCH_S = 1.0
"""On a remote queue, finished chunks' messages wait at most this long for a batch delete."""


class Loop:
    """One worker's I/O: everything :class:`WorkerState` asks for."""

    def __init__(
        self,
        backend,
        pool: SlotPool,
        config: Config,
        worker: str,
        log_dir: str,
        stop_event: threading.Event | None,
    ) -> None:
        self.queue, self.store = backend.queue, backend.store
        self.pool, self.config, self.worker, self.log_dir = pool, config, worker, log_dir
        self.stop_event = stop_event
        self.watcher: SpotWatcher | None = None
        self.noticed: set[str] = set()
        self.signals = self.stops_seen = 0
        self.started = time.monotonic()
        self.state = WorkerState(config, self.started)
        self.jobs = JobCache(self.store)
        self.counters = Counters(self.store, worker)
        self.deletes: list[str] = []
        self.deletes_due: float | None = None
        self.trouble = StoreTrouble(config.store_timeout)
        self.logs = TaskLogs(self.store, log_dir, self.trouble)
        self.writer = ChunkWriter(self.store, worker, self.trouble)
        self.node_due = 0.0
        self.tally = dict.fromkeys(("duplicates", "dead_lettered", "released"), 0)
        self.check_failed = False  # asking whether work is left failed once: said so
        self.templates: dict[str, str] = {}  # job -> its unpacked files
        self.usage = Usage()
        self.node_every = REMOTE_NODE_EVERY_S if self.store.remote else NODE_EVERY_S
        self.quiet_until, self.quiet_s = 0.0, QUIET_S

    def run(self) -> WorkerSummary:
        try:
            while not self.state.exited:
                self._turn()
        finally:
            self._leave()
        return self._summary()

    def _turn(self) -> None:
        self._check_stop()
        self._check_notice()
        if self.state.deadline is not None:  # chunks that just ended are stored, not killed
            for event in self.pool.wait(0):
                self._event(event)
        now = time.monotonic()
        self._act(self.state.tick(now, self.pool.running()))
        if self.state.exited:
            return
        self._receive(now)
        busy = self.pool.idle() < self.pool.workers
        if busy:
            for event in self.pool.wait(WAIT_S):
                self._event(event)
        elif self.state.wants(time.monotonic()) == 0:
            time.sleep(0.05)
        self._retry_records()
        self._flush_deletes(time.monotonic())
        self._beat()
        if self.trouble.given_up(time.monotonic()) and not self.state.exited:
            warn(f"the store has failed for over {self.config.store_timeout:g} s: leaving")
            self._act(self.state.fail(time.monotonic(), STORE_FAILING))

    # Receiving.

    def _receive(self, now: float) -> None:
        want = self.state.wants(now)
        if not want or self.trouble.failing:  # no new work while results cannot be stored
            return
        if self.queue.remote and self._waiting() and want < self._refill_at:
            return  # chunks wait their turn here: receive later, several in one request
        busy = self.pool.idle() < self.pool.workers
        if busy and now < self.quiet_until:
            return  # the queue had nothing lately: ask again later, not every turn
        try:
            wait = 0.0 if busy else (REMOTE_POLL_S if self.queue.remote else POLL_S)
            messages = self.queue.receive(want, wait, self.config.visibility, self.config.job)
        except BackendError as exc:
            warn(f"receiving failed, trying again: {exc}")
            time.sleep(POLL_S)
            # No work came: counts toward --idle-exit, so that a worker the queue keeps
            # refusing (no rights, queue deleted) leaves, and its instance stops billing.
            self._act(self.state.received(now, []))
            return
        if busy and not messages:
            self.quiet_until, self.quiet_s = (
                now + self.quiet_s,
                min(LONGEST_QUIET_S, 2 * self.quiet_s),
            )
        else:
            self.quiet_s = QUIET_S
        deliveries = []
        for m in messages:
            try:
                deliveries.append(self._deliver(m))
            except BackendError as exc:  # cannot tell what to do with it now: let it come back
                warn(f"looking up a message's job failed, releasing it: {exc}")
                self._act([Release((m.receipt,), "store unavailable")])
        self._act(self.state.received(now, deliveries))  # idle since the poll began

    def _waiting(self) -> int:
        """Held chunks that have not started: work in reserve."""
        return sum(1 for chunk in self.state.chunks.values() if not chunk.started)

    @property
    def _refill_at(self) -> int:
        return max(1, (self.config.slots + self.config.prefetch) // 2)

    def _deliver(self, m: Message) -> Delivery:
        try:
            message = ChunkMessage.decode(m.body)
            layout.validate_id(message.job)
        except (MalformedMessage, ConfigError) as exc:
            return Delivery(m.receipt, None, problem=str(exc))
        now = time.monotonic()
        spec, problem = self.jobs.spec(message.job, now)
        if spec is None:
            return Delivery(m.receipt, message, problem=problem)
        if self.jobs.cancelled(message.job, now):
            return Delivery(m.receipt, message, spec, cancelled=True)
        if self.config.job not in (None, message.job):
            return Delivery(m.receipt, message, spec)
        plan = self.jobs.plan(message.job, message.chunk)
        if not plan.matches(message.chunk, message.indices):
            what = "its tasks are not" if plan.expected(message.chunk) is not None else "it is not"
            why = f"chunk {message.chunk}: {what} one of job {message.job}'s chunks"
            return Delivery(m.receipt, None, problem=why)
        # A first delivery cannot have a result yet (a chunk number is sent once); only a
        # redelivery pays a request to look (and writes the summary its writer may not have).
        recorded = m.receive_count > 1 and self.store.exists(
            layout.result(message.job, message.chunk)
        )
        if recorded:
            self.writer.summarize(message.job, message.chunk)
        try:
            inputs = b"" if recorded else self._inputs(message)
        except (MalformedMessage, ConfigError) as exc:
            return Delivery(m.receipt, None, problem=str(exc))
        first = plan.first_attempts(message.chunk)
        code = plan.code(message.chunk)
        try:
            self._unpack_files(message.job)
        except ConfigError as exc:  # the job's files are gone or damaged: it cannot run
            return Delivery(m.receipt, message, spec, problem=str(exc), inputs=inputs)
        return Delivery(
            m.receipt,
            message,
            spec,
            recorded=recorded,
            inputs=inputs,
            first_attempts=first,
            code=code,
        )

    def _inputs(self, message: ChunkMessage) -> bytes:
        if message.spill is None:
            return message.inputs or b""
        if not message.spill.startswith(layout.inputs_prefix(message.job) + "/"):
            raise MalformedMessage(f"spill key {message.spill!r} is not an input of its job")
        try:
            return self.store.get(message.spill)
        except ObjectNotFound as exc:
            raise MalformedMessage(f"spilled inputs missing: {exc}") from exc

    # Carrying out decisions.

    def _act(self, actions: list) -> None:
        for action in actions:
            try:
                self._do(action)
            except BackendError as exc:
                warn(f"{type(action).__name__} failed: {exc}")

    def _do(self, action) -> None:
        if isinstance(action, Run):
            self._run(action)
        elif isinstance(action, Record):
            self._record(action)
        elif isinstance(action, Extend):
            self._extend(action)
        elif isinstance(action, Release):
            self.tally["released"] += sum(self.queue.release(action.receipts))
        elif isinstance(action, Delete):
            self.queue.delete(action.receipts)
            if action.reason == "result already stored":
                self.tally["duplicates"] += len(action.receipts)
        elif isinstance(action, DeadLetter):
            self.tally["dead_lettered"] += self.queue.dead_letter(action.receipt, action.reason)
        elif isinstance(action, Kill):
            if action.leaving is not None:
                self._keep_partial_log(action.work_id, action.leaving)
            self.pool.kill(action.work_id)
        elif isinstance(action, CheckIdle):
            self._check_idle()

    def _run(self, run: Run) -> None:
        where = {index: p for p, index in enumerate(run.message.indices)}
        packed = PackedChunk(
            run.indices,
            tuple(where[i] for i in run.indices),
            run.inputs,
            len(run.message.indices),
            run.job.star,
            run.job.id,
            run.attempts,
            self.templates.get(run.job.id),
        )
        code_key = run.code or layout.code(run.job.id)
        code = self.jobs.code(run.job.id, code_key)
        self.counters.touch(run.job.id)
        self.pool.send(Work(run.work_id, code_key, code, packed, run.job.seed))

    def _unpack_files(self, job: str) -> None:
        """Unpack the job's files once (they are the template of every task's directory)."""
        if job in self.templates:
            return
        shipped = JobFiles.from_manifest(self.jobs.manifests[job].get("files"))
        if shipped is not None:
            where = os.path.join(self.log_dir, "files", shipped.digest)
            self.templates[job] = str(unpack(self.store, shipped.digest, where))

    def _check_idle(self) -> None:
        """Before leaving idle: are messages of the jobs served still out? Is the one job
        served settled?"""
        self._flush_deletes()  # this worker's own finished messages are not "out"
        job = self.config.job
        try:
            counts = self.queue.counts(job)
            pending = counts.visible + counts.in_flight > 0
            done = job is not None and not pending and self._settled(job)
        except BackendError as exc:  # cannot tell: as if nothing were left (a worker the
            # queue keeps refusing must leave, so that its instance stops billing)
            if not self.check_failed:
                warn(f"cannot tell whether work is left (leaving when idle): {exc}")
            self.check_failed = True
            pending, done = False, False
        self._act(self.state.idle_checked(time.monotonic(), pending=pending, settled=done))

    def _settled(self, job: str) -> bool:
        spec, _ = self.jobs.spec(job, time.monotonic())
        if spec is None:
            return False
        return settled(self.queue, self.store, job, self.jobs.manifests[job])

    def _extend(self, action: Extend) -> None:
        try:
            self.queue.extend(action.receipts, action.seconds)
        except QueueError:  # some receipt went stale: find which, stop extending those
            stale, why = [], ""
            for receipt in action.receipts:
                try:
                    self.queue.extend(receipt, action.seconds)
                except QueueError as exc:
                    stale.append(receipt)
                    why = str(exc)
            if stale:  # the chunk runs on, but its message may run elsewhere too
                warn(f"cannot keep {len(stale)} message(s) hidden any longer: {why}")
            self.state.lost(stale)

    def _record(self, record: Record, pause: float | None = None) -> None:
        """Logs are stored already; now the record and its summary, then the counters,
        then the delete."""
        wrote = self.writer.write(record) if pause is None else self.writer.write(record, pause)
        if wrote is None:  # kept, to try again
            return
        self.tally["duplicates"] += not wrote
        self.counters.add(record.job.id, record.result, wrote)
        try:
            self.counters.flush(time.monotonic(), self._running)
        except BackendError as exc:  # the counters are written again later
            self.trouble.failed(time.monotonic(), "writing the counters", exc)
        try:
            self._delete_later(record.receipt)
        finally:
            self.quiet_until, self.quiet_s = 0.0, QUIET_S  # a slot is free: ask for work
            self._act(self.state.settled(time.monotonic(), record.receipt))

    def _delete_later(self, receipt: str) -> None:
        """Delete a finished chunk's message: at once on a local queue; on a remote one,
        in batches of up to 10 sent within a fraction of the visibility timeout (one paid
        request for several chunks)."""
        self.deletes.append(receipt)
        if not self.queue.remote or len(self.deletes) >= BATCH_SIZE:
            self._flush_deletes()
        elif self.deletes_due is None:
            self.deletes_due = time.monotonic() + min(DELETE_BATCH_S, self.config.visibility / 4)

    def _flush_deletes(self, now: float | None = None) -> None:
        if not self.deletes or (now is not None and now < (self.deletes_due or 0)):
            return
        receipts, self.deletes, self.deletes_due = self.deletes, [], None
        try:
            self.queue.delete(receipts)
        except BackendError as exc:  # the messages come back; their records are stored
            warn(f"deleting {len(receipts)} finished message(s) failed: {exc}")

    def _retry_records(self) -> None:
        for record, pause in self.writer.due(time.monotonic()):
            if record.receipt in self.state.chunks:  # not given up meanwhile
                self._record(record, pause)

    def _running(self, job: str) -> int:
        return self.state.running_tasks(job)

    # Chunks that ended.

    def _event(self, event: Done | Crashed) -> None:
        run = self.state.runs.get(event.work_id)
        now = time.monotonic()
        if isinstance(event, Done):
            logs = self.logs.done(run, event.result) if run is not None else {}
            self._act(self.state.done(now, event.work_id, event.result, logs))
            return
        log = ""
        if run is not None and event.index in run.indices:
            start = self.pool.crash_offset(event.work_id)
            log = self.logs.crashed(run, event.index, start, self._why(run, event))
        self.logs.discard(event.work_id)
        crash = {"exitcode": event.exitcode, "signal": event.signal, "log": log}
        self._act(self.state.crashed(now, event.work_id, event.index, event.reason, **crash))

    def _keep_partial_log(self, work_id: int, run: Run) -> None:
        """Store what the task cut short by the worker's leaving had printed so far."""
        running = self.pool.running().get(work_id)
        if running is not None and running[0] in run.indices:
            start = self.pool.output_start(work_id)
            why = "was cut short: its worker had to leave; it runs again elsewhere"
            self.logs.crashed(run, running[0], start, why)

    def _why(self, run: Run, event: Crashed) -> str:
        if self.state.kills.get(event.work_id) == event.index:
            return f"ran longer than its timeout of {run.job.timeout:g} s and was stopped"
        return f"crashed: {event.reason}"

    # Stopping, heartbeats, leaving.

    def _check_stop(self) -> None:
        event = self.stop_event
        asked = self.signals + (1 if event is not None and event.is_set() else 0)
        if asked > self.stops_seen:
            self.stops_seen = asked
            now = time.monotonic()
            self.pool.tell_leaving()  # cf.interrupted(): running tasks checkpoint now
            self._act(self.state.stop(now, force=asked > 1))

    def _check_notice(self) -> None:
        notice = self.watcher.latest if self.watcher is not None else None
        if notice is None or notice.kind in self.noticed:
            return
        self.noticed.add(notice.kind)
        warn(f"{notice}: taking no more work, {len(self.state.chunks)} chunk(s) held")
        if notice.kind == "interruption":
            self.pool.tell_leaving()
        self._act(self.state.notice(time.monotonic(), notice.kind))

    def _beat(self) -> None:
        now = time.monotonic()
        try:
            self.counters.flush(now, self._running)
        except BackendError as exc:
            self.trouble.failed(now, "writing the counters", exc)
        if now >= self.node_due:
            self.node_due = now + self.node_every
            self._write_node()

    def _write_node(self, state: str | None = None) -> None:
        """Write the heartbeat (see :mod:`.node`); ``state`` None: as the worker is now."""
        now, wall = time.monotonic(), time.time()
        if state is None:
            state = "leaving" if self.state.leaving else "running" if self.state.chunks else "idle"
        shares = self.pool.shares()  # how far each slot's task says it is (cf.task_progress)
        running = [
            {"job": job, "chunk": chunk, "tasks": list(tasks[:TASKS_SHOWN]),
             "task_count": len(tasks), "since": wall - (now - since), "attempt": attempt,
             "task_progress": round(max((shares.get(r, 0.0) for r in runs), default=0.0), 3)}
            for job, chunk, tasks, since, attempt, runs in self.state.running_chunks()
        ]  # fmt: skip
        jobs = {
            job: {**counts, "running": self.state.running_tasks(job)}
            for job, counts in self.counters.jobs.items()
        }
        notice = self.watcher.latest if self.watcher is not None else None
        node = heartbeat(
            worker=self.worker,
            state=state,
            slots=self.config.slots,
            busy=self.pool.workers - self.pool.idle() if running else 0,
            started=wall - (now - self.started),
            chunks=running,
            jobs=jobs,
            usage=self.usage.read(),
            instance=self.watcher.identity if self.watcher is not None else {},
            notice=None if notice is None else str(notice),
            every=self.node_every,
        )
        try:
            self.store.put(layout.node(self.worker), json.dumps(node).encode())
        except BackendError as exc:
            self.trouble.failed(time.monotonic(), "writing the heartbeat", exc)

    def _leave(self) -> None:
        """Release whatever is still held; write the last counters and heartbeat."""
        self._flush_deletes()
        held = self.state.held()
        if held:
            try:
                self.tally["released"] += sum(self.queue.release(list(held)))
            except BackendError as exc:
                warn(f"releasing {len(held)} message(s) failed: {exc}")
        try:
            self.counters.flush(time.monotonic(), lambda job: 0, force=True)
        except BackendError as exc:
            warn(f"writing the counters failed: {exc}")
        self._write_node("interrupted" if self.state.exited == SPOT_INTERRUPTION else "stopped")

    def _summary(self) -> WorkerSummary:
        totals = self.counters.totals()
        return WorkerSummary(
            self.worker,
            self.state.exited or "stopped",
            totals["chunks"],
            totals["done"],
            totals["failed"],
            seconds=time.monotonic() - self.started,
            **self.tally,
        )
