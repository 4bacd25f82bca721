"""One ``cf.map`` as one durable job: submit, start its workers, yield its results.

:func:`run_job` submits the items (:func:`submit_planned`), starts the plan's workers
(:mod:`.workers`: local processes or cloud instances, none when they already run), then
looks at the store every ``poll`` seconds (less often while nothing changes): each chunk
record that appeared is read once and its result yielded in the caller's task numbers
(:class:`JobRun`). Once the job is settled the dead chunks' tasks are yielded as
:class:`~cheerful.errors.WorkerCrashed` failures, so every task is yielded exactly once.

Ending early (an error raised for the first failed task, an ``imap`` left) cancels the job:
nobody waits for it. Ctrl-C does not: the job goes on in the store, the workers started
for it are stopped, and :class:`~cheerful.errors.JobInterrupted` says how to reattach.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from cheerful.errors import BackendError, ConfigError, JobError, JobInterrupted
from cheerful.task import ChunkResult, ErrorInfo

from .task import PlannedTask
from .workers import JobWorkers

if TYPE_CHECKING:
    from cheerful.durable.job import Job

__all__ = ["EXACT_EVERY_S", "JobRun", "open_plan_backend", "run_job", "submit_planned"]

EXACT_EVERY_S = 5.0
"""The job's exact status (settled? cancelled? dead chunks?) is read at least this often."""
LONGEST_POLL_S = 5.0
"""While nothing changes the store is looked at less often, down to once this often."""
FIRST_POLL_S = 0.05
"""The first looks come this soon after the submit (then 1.5 times later each)."""
"""While nothing changes the store is looked at less often, down to once this often."""


def open_plan_backend(url: str) -> Any:
    """The backend at ``url``, checked to be set up (its queue answers); one that is not is
    a :class:`~cheerful.errors.ConfigError` saying how to set it up. "local" is made."""
    from cheerful.durable.backends import open_backend

    try:
        backend = open_backend(url, create=url == "local")
        backend.queue.max_message_bytes  # noqa: B018 - asks the queue: is it there?
    except (BackendError, ConfigError) as exc:
        raise ConfigError(
            f"the durable plan's backend {url!r} cannot be used: {exc}. Set it up once with "
            f"`cheerful init {url}`"
        ) from exc
    return backend


def submit_planned(
    plan: Any,
    backend: Any,
    fn: Any,
    items: Sequence[Any],
    *,
    star: bool = False,
    inner: tuple[Any, ...] = (),
    chunk_size: int | None = None,
    seed: int | None = None,
    indices: Sequence[int] | None = None,
) -> Job:
    """Submit ``items`` as a job of ``plan`` (``indices``: the caller's number of each)."""
    from cheerful.durable.submit import submit

    task = PlannedTask(fn, star=star, inner=inner, seed=seed, indices=indices)
    return submit(
        fn if task.plain else task,
        items,
        backend=backend,
        chunk_size=chunk_size,
        seed=seed if indices is None else None,  # else the task seeds itself (caller's index)
        retries=plan.retries,
        timeout=plan.timeout,
        name=plan.name,
        files=plan.files,
        workdir=plan.workdir,
    )


def run_job(
    plan: Any,
    fn: Any,
    items: Sequence[Any],
    star: bool,
    inner: tuple[Any, ...],
    chunk_size: int | None,
    seed: int | None,
) -> Iterator[ChunkResult]:
    """Submit ``items`` as one job of ``plan`` and yield its results (module docstring)."""
    backend = open_plan_backend(plan.backend)
    job = submit_planned(
        plan, backend, fn, items, star=star, inner=inner, chunk_size=chunk_size, seed=seed
    )
    run = JobRun(plan, job)
    workers = JobWorkers(plan, backend, job.id, nested=bool(inner))
    finished = False
    try:
        workers.start()
        pause = min(plan.poll, FIRST_POLL_S)  # a short job is seen done soon
        # while results come, look again soon on a local store (a listing is a directory
        # read), every ``poll`` on a remote one (a paid request)
        busy_pause = plan.poll if backend.store.remote else min(plan.poll, 2 * FIRST_POLL_S)
        while True:
            results = run.step(time.monotonic())
            yield from results
            if run.done:
                finished = True
                return
            workers.check(time.monotonic())
            pause = busy_pause if results else min(LONGEST_POLL_S, pause * 1.5)
            time.sleep(pause)
    except GeneratorExit as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):
            raise run.interrupted(JobInterrupted) from None
        run.cancel()  # the caller stopped reading: nobody waits for the rest
        raise
    except KeyboardInterrupt:
        raise run.interrupted(JobInterrupted) from None
    except BaseException:
        run.cancel()
        raise
    finally:
        workers.stop(settled=finished)


class JobRun:
    """What was read of one job of a durable plan: :meth:`step` reads what is new."""

    def __init__(self, plan: Any, job: Job, indices: Sequence[int] | None = None) -> None:
        from cheerful.durable.rounds import read_plan

        self.plan, self.job, self.indices = plan, job, indices
        self.chunk_plan = read_plan(job.backend.store, job.id, job.manifest)
        self.seen: set[str] = set()
        self.yielded = 0
        self.done = False
        self._exact_at = 0.0
        self._came = False  # the last listing found new records: read the status first

    def step(self, now: float) -> list[ChunkResult]:
        """The results stored since the last step (one listing of the results; first the
        exact status when due, or when every task has a result or new ones came last
        time). Sets :attr:`done` once the job is settled, after its dead chunks' tasks
        were returned as failures: the status is read before the listing, so a settled
        job's listing holds every record."""
        from cheerful.durable.records import record_keys

        status = None
        if self.yielded >= self.job.tasks or now >= self._exact_at or self._came:
            self._exact_at = now + EXACT_EVERY_S
            status = self.job.status(exact=True)
        store = self.job.backend.store
        keys = [k for k in record_keys(store, self.job.id) if k not in self.seen]
        self._came = bool(keys)
        results = self._read(keys)
        if status is None:
            return results
        if status.settled:
            results += self._dead()
            if self.yielded != self.job.tasks:  # never a silent hole in the results
                raise JobError(
                    f"job {self.job.id} is settled but {self.yielded} of its {self.job.tasks} "
                    "task outcomes were read; read them with "
                    f"cf.Job.attach({self.job.id!r}).results()"
                )
            self.done = True
        elif status.cancelled and not status.running:
            raise JobError(f"job {self.job.id} was cancelled: {status}")
        elif status.incomplete:
            raise JobError(f"job {self.job.id}: {status.incomplete}")
        return results

    def _read(self, keys: list[str]) -> list[ChunkResult]:
        from cheerful.durable import layout
        from cheerful.durable.records import read_records

        chunks = [layout.parse_results_key(key)[0] for key in keys]
        store, found = self.job.backend.store, []
        for record in read_records(store, self.job.id, chunks, self.chunk_plan):
            self.yielded += len(record.result)
            printed = _printed(store, record.logs, record.result.errors)
            found.append(self._callers(record.result, printed))
        self.seen.update(keys)  # a key whose record is not the job's is not read again
        return found

    def _dead(self) -> list[ChunkResult]:
        from cheerful.durable.records import dead_chunks, dead_text

        backend, found = self.job.backend, []
        for dead in dead_chunks(backend.queue, backend.store, self.job.id, self.chunk_plan):
            error = ErrorInfo("WorkerCrashed", dead_text(dead), "", crash={"exitcode": None})
            indices = list(dead.indices)
            self.yielded += len(indices)
            failed = ChunkResult(indices, [None] * len(indices), dict.fromkeys(indices, error))
            found.append(self._callers(failed))
        return found

    def _callers(self, result: ChunkResult, printed: dict | None = None) -> ChunkResult:
        """``result`` in the caller's task numbers, with what its tasks printed."""
        to = self.indices
        if to is None:
            return result.replace(outputs=printed or None)
        errors = {to[i]: e for i, e in (result.errors or {}).items()}
        outputs = {to[i]: o for i, o in printed.items()} if printed else None
        indices = [to[i] for i in result.indices]
        return ChunkResult(indices, result.values, errors, result.seconds, outputs=outputs)

    def cancel(self) -> None:
        """Cancel the job (nobody waits for it any more)."""
        # finished meanwhile, or the store failed: the error the caller sees is its own
        with contextlib.suppress(Exception):
            self.job.cancel()

    def interrupted(self, kind: type) -> BaseException:
        """The :class:`~cheerful.errors.JobInterrupted` that says how to reattach to the job."""
        url = self.job.backend.url
        here = url.endswith("/.cheerful")
        where = "" if here else f", backend={url!r}"
        flag = "" if here else f" --backend '{url}'"
        return kind(
            f"interrupted: job {self.job.id} goes on in the store. Reattach with "
            f"cf.Job.attach({self.job.id!r}{where}).results(); start workers for it with "
            f"`cheerful worker --job {self.job.id}{flag}`",
            self.job.id,
            url,
        )



def _printed(store: Any, logs: dict[int, str], errors: dict[int, ErrorInfo]) -> dict[int, Any]:
    """What the tasks of a record printed (their logs: one get each, only for the tasks
    that printed or failed), as the :class:`~cheerful.taskio.TaskOutput` other plans
    relay; a failed task's log ends with its traceback, which its error carries already."""
    from cheerful.durable.stores.many import get_many
    from cheerful.durable.worker.logs import failure_note
    from cheerful.taskio import OUTPUT_CAP, TaskOutput

    keys = {key: index for index, key in logs.items() if key}
    printed = {}
    for key, data in get_many(store, list(keys)):
        text = (data or b"").decode(errors="replace")
        error = errors.get(keys[key]) if errors else None
        if error is not None and text.endswith(note := failure_note(error)):
            text = text[: len(text) - len(note)]
        if text:
            cut = max(0, len(text) - OUTPUT_CAP)
            printed[keys[key]] = TaskOutput((("out", text[:OUTPUT_CAP]),), cut)
    return printed
