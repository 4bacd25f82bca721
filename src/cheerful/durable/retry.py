"""Send a job's failed and dead tasks again: one retry *round* at a time, safe to repeat.

A round is claimed write-once (``retries/<round>/round.json``, :mod:`.rounds`) before any of
its messages is sent, and marked ``sent`` after the last one. So two retries at once, or a
retry while workers still run, can never send a task twice: a task is sent again only if
its newest outcome is a failure and no chunk of an earlier round that still waits for its
outcome holds it. A round that was cut short (its process killed mid-send: gone from this
host, or silent for :data:`~.rounds.SENDER_SILENCE_S` on another) is finished by the next
retry, which sends again each of its chunks that has no outcome (a chunk sent twice runs at
most once more, and only its first record counts).

Dead chunks (dead-lettered, no record) go back to the queue as they were. A round may run
new code (a fixed function, script or command, stored with the round); its tasks' attempts
are numbered on from their earlier ones, so earlier attempts' logs stay.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass

from cheerful.errors import JobError

from . import layout
from .backends import Backend
from .counts import list_results
from .records import FAILED, InputReader, dead_chunks, read_view
from .rounds import ChunkPlan, Round, read_plan, sender_gone
from .sending import json_bytes, send_chunks

__all__ = ["CLAIM_TRIES", "Resent", "retry"]

CLAIM_TRIES = 5
"""Times a retry reads the job again when another retry claimed the round it wanted."""


@dataclass(frozen=True)
class Resent:
    """What one retry sent: tasks in a new round, tasks of dead chunks redriven, tasks of
    an earlier round cut short sent again."""

    failed: int = 0
    dead: int = 0
    finished: int = 0

    @property
    def total(self) -> int:
        """Every task sent again."""
        return self.failed + self.dead + self.finished


def retry(backend: Backend, job: str, manifest: dict, code: bytes | None = None) -> Resent:
    """Send the job's failed and dead tasks again (see the module docstring); ``code``
    replaces the job's pickled code for the tasks of the new round."""
    finished = 0
    backend.store.delete(layout.settled_mark(job))  # workers of the job stay for the retry
    for _ in range(CLAIM_TRIES):
        plan = read_plan(backend.store, job, manifest)
        finished += _finish_rounds(backend, job, plan, manifest)
        claimed = _new_round(backend, job, plan, manifest, code)
        if claimed is not None:
            return Resent(claimed[0], claimed[1], finished)
    raise JobError(f"job {job}: other retries keep claiming its next round; try again later")


def _finish_rounds(backend: Backend, job: str, plan: ChunkPlan, manifest: dict) -> int:
    """Send again the chunks of rounds cut short that have no outcome; return their tasks."""
    now = time.time()
    cut = [r for r in plan.rounds if not r.sent and sender_gone(r.by, r.at, now)]
    if not cut:
        return 0
    recorded = list_results(backend.store, job).records
    dead = {d.chunk for d in dead_chunks(backend.queue, backend.store, job, plan)}
    inputs = InputReader(backend.store, job, plan.chunk_size)
    sent = 0
    for r in cut:
        chunks = [
            (r.first_chunk + offset, tasks)
            for offset, tasks in enumerate(r.chunks)
            if r.first_chunk + offset not in recorded | dead
        ]
        _send(backend, job, chunks, inputs)
        backend.store.put(layout.round_sent(job, r.number), json_bytes({"at": time.time()}))
        sent += sum(len(tasks) for _, tasks in chunks)
    return sent


def _new_round(
    backend: Backend, job: str, plan: ChunkPlan, manifest: dict, code: bytes | None
) -> tuple[int, int] | None:
    """Claim and send the next round; ``(failed, dead)`` tasks sent, or None if another
    retry claimed the round first (read the job again and go on)."""
    view = read_view(backend, job, plan)
    if view.cancelled:
        raise JobError(f"job {job} is cancelled; submit it again instead")
    recorded = list_results(backend.store, job).records
    dead = dead_chunks(backend.queue, backend.store, job, plan)
    dead_numbers = {d.chunk for d in dead}
    waiting = {  # tasks of earlier rounds' chunks that wait for their outcome
        task
        for chunk in plan.numbers()
        if plan.is_retry(chunk) and chunk not in recorded and chunk not in dead_numbers
        for task in plan.expected(chunk) or ()
    }
    again = {t for d in dead for t in d.indices}
    failed = [
        i
        for i, state in enumerate(view.state)
        if state == FAILED and i not in waiting and i not in again
    ]
    if failed:
        number = max([0, *(r.number for r in plan.rounds)]) + 1
        size = plan.chunk_size
        chunks = tuple(tuple(failed[s : s + size]) for s in range(0, len(failed), size))
        attempts = tuple(tuple(view.attempts.get(i, 1) for i in c) for c in chunks)
        key = layout.round_code(job, number) if code is not None else None
        spec = Round(number, plan.end, chunks, attempts, key, time.time())
        if not backend.store.put_if_absent(layout.round_spec(job, number), _claim(spec)):
            return None
        if code is not None:
            backend.store.put(layout.round_code(job, number), code)
    if dead:
        backend.queue.redrive_dead([d.message_id for d in dead], group=job)
    if failed:
        numbered = [(spec.first_chunk + n, tasks) for n, tasks in enumerate(spec.chunks)]
        _send(backend, job, numbered, InputReader(backend.store, job, plan.chunk_size))
        backend.store.put(layout.round_sent(job, number), json_bytes({"at": time.time()}))
    return len(failed), sum(len(d.indices) for d in dead)


def _claim(spec: Round) -> bytes:
    """The stored round, with who sent it (a round cut short says by whom)."""
    return spec.to_json(by={"host": platform.node(), "pid": os.getpid()})


def _send(backend: Backend, job: str, chunks: list, inputs: InputReader) -> None:
    send_chunks(
        backend,
        job,
        chunks,
        inputs.items,
        "retrying",
        again=f"run `cheerful retry {job}` (or job.retry_failed()) again to finish",
    )
