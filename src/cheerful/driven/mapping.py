"""``cf.map``, ``cf.starmap`` and ``cf.imap``: a whole list of tasks on the plan in force.

They validate everything first (an unpicklable function or input fails before any task
runs), then let :mod:`cheerful.driven.scheduler` cut the list into chunks and run them.
``cf.imap`` over an iterator (a generator, a file) is lazy instead: it reads items only as
workers need them, so an endless or huge input runs in bounded memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import closing
from typing import Any, Literal, overload

from cheerful.errors import ConfigError
from cheerful.progress import Reporter, reporter
from cheerful.serialize import rebuild_exception
from cheerful.task import ChunkResult, Failure, Outcome, as_items

from .plans.base import Plan
from .plans.stack import current_levels
from .relay import Relay
from .scheduler import run_chunks

__all__ = ["imap", "map", "starmap"]

Errors = Literal["raise", "return"]


def map(  # noqa: A001 - the public name is cf.map
    fn: Callable,
    items: Iterable[Any],
    *,
    plan: Plan | None = None,
    chunk_size: int | None = None,
    seed: int | None = None,
    progress: bool | Callable[..., Any] = False,
    errors: Errors = "raise",
) -> list[Any]:
    """``[fn(x) for x in items]``, run in parallel on the plan; results in input order.

    ``seed`` gives each task its own reproducible random stream (``random``, numpy's
    global generator and :func:`cheerful.task_rng`), identical under every plan and
    chunk size. With ``errors="raise"`` the first failure re-raises as its own type
    (remote traceback as ``__cause__``); with ``"return"`` failed slots hold a
    :class:`cheerful.Failure`.
    """
    return _gather(fn, items, False, plan, chunk_size, seed, progress, errors, "cf.map")


def starmap(
    fn: Callable,
    items: Iterable[Iterable[Any]],
    *,
    plan: Plan | None = None,
    chunk_size: int | None = None,
    seed: int | None = None,
    progress: bool | Callable[..., Any] = False,
    errors: Errors = "raise",
) -> list[Any]:
    """``[fn(*args) for args in items]`` in parallel; otherwise as :func:`map`."""
    tuples = [_as_args(args) for args in as_items(items)]
    return _gather(fn, tuples, True, plan, chunk_size, seed, progress, errors, "cf.starmap")


@overload
def imap(
    fn: Callable,
    items: Iterable[Any],
    *,
    ordered: Literal[False] = False,
    plan: Plan | None = None,
    chunk_size: int | None = None,
    seed: int | None = None,
    progress: bool | Callable[..., Any] = False,
    errors: Errors = "raise",
) -> Iterator[tuple[int, Any]]:
    """``(index, result)`` pairs in completion order (see the implementation below)."""


@overload
def imap(
    fn: Callable,
    items: Iterable[Any],
    *,
    ordered: Literal[True],
    plan: Plan | None = None,
    chunk_size: int | None = None,
    seed: int | None = None,
    progress: bool | Callable[..., Any] = False,
    errors: Errors = "raise",
) -> Iterator[Any]:
    """Results in input order (see the implementation below)."""


def imap(
    fn: Callable,
    items: Iterable[Any],
    *,
    ordered: bool = False,
    plan: Plan | None = None,
    chunk_size: int | None = None,
    seed: int | None = None,
    progress: bool | Callable[..., Any] = False,
    errors: Errors = "raise",
) -> Iterator[Any]:
    """Yield ``(index, result)`` pairs as tasks complete (not in input order); with
    ``ordered=True``, yield the results alone in input order (as ``Pool.imap`` and
    ``Executor.map`` do), each as soon as it and every one before it are back.

    Stopping the iteration early stops the tasks still running. An iterator (a generator,
    a file) is read lazily: items are taken only as workers become free (a chunk or two
    per worker ahead), so an endless one works and memory stays bounded; each input is
    checked as it is read. With ``errors="raise"`` a failure raises when it is reached:
    at once unordered, after every result before it ordered.
    """
    _check_errors(errors)
    if ordered not in (True, False):
        raise ConfigError(f"ordered must be True or False, not {ordered!r}")
    total = None
    if not isinstance(items, Iterable) or isinstance(items, Sized):
        items = items if isinstance(items, range) else as_items(items)  # a range stays one
        total = len(items)
    else:
        items = iter(items)
    report = reporter(progress, total, "cf.imap")
    chunks = _chunks(fn, items, False, plan, chunk_size, seed, _tick(report))
    if ordered:
        return _yield_in_order(chunks, report, errors)
    return _yield_pairs(chunks, report, errors)


def _tick(report: Reporter) -> Callable[[float], Any] | None:
    """Where running tasks' progress goes, when anyone hears it."""
    return report.partial if report.wants_ticks else None


def _yield_pairs(chunks, report: Reporter, errors) -> Iterator[tuple[int, Any]]:
    relay = Relay("cf.imap")
    with closing(chunks), report:
        for result in chunks:
            report.advance(len(result), len(result.errors))
            relay.add(result)
            if not result.errors and not result.outputs:  # the common case, at full speed
                yield from zip(result.indices, result.values, strict=True)
                continue
            for outcome in result.outcomes():
                relay.replay_one(outcome.index)
                yield outcome.index, _value(outcome, errors, relay)
    relay.finish(stacklevel=4)


def _yield_in_order(chunks, report: Reporter, errors) -> Iterator[Any]:
    """Results in input order: what comes back early waits for every result before it."""
    relay = Relay("cf.imap")
    early: dict[int, ChunkResult | Outcome] = {}  # first index -> a run of tasks, or one
    upto = 0  # every result below was yielded
    with closing(chunks), report:
        for result in chunks:
            report.advance(len(result), len(result.errors))
            relay.add(result)
            indices = result.indices
            if isinstance(indices, range) and indices.step == 1:
                early[indices.start] = result
            else:  # not a run of consecutive tasks: each task waits on its own
                early.update((outcome.index, outcome) for outcome in result.outcomes())
            while upto in early:
                part = early.pop(upto)
                if isinstance(part, Outcome):
                    upto += 1
                    outcomes: Iterable[Outcome] = (part,)
                else:
                    upto += len(part)
                    if not part.errors and not part.outputs:  # the common case, at full speed
                        yield from part.values
                        continue
                    outcomes = part.outcomes()
                for outcome in outcomes:
                    relay.replay_one(outcome.index)
                    yield _value(outcome, errors, relay)
    relay.finish(stacklevel=4)


def _gather(fn, items, star, plan, chunk_size, seed, progress, errors, label) -> list[Any]:
    items = items if isinstance(items, range) else as_items(items)  # a range stays one
    _check_errors(errors)
    results: list[Any] = [None] * len(items)
    report = reporter(progress, len(items), label)
    chunks = _chunks(fn, items, star, plan, chunk_size, seed, _tick(report))
    placed = 0
    relay = Relay(label)
    first_failure: Outcome | None = None  # errors="raise": the lowest failed task so far
    with closing(chunks), report:
        for result in chunks:
            report.advance(len(result), len(result.errors))
            relay.add(result)
            failed = _place(results, result, errors, relay)
            if failed is not None and (first_failure is None or failed.index < first_failure.index):
                first_failure = failed
            if first_failure is not None and relay.finished_below > first_failure.index:
                _value(first_failure, errors, relay)  # raises, as the loop would have
            relay.replay_ready()
            placed += len(result)
    if placed != len(items):  # a plan that lost outcomes must say so, never leave None
        from cheerful.errors import BrokenPlan  # made on first use (cheerful.errors)

        raise BrokenPlan(f"{label}: {placed} of {len(items)} task outcomes came back")
    relay.finish()
    return results


def _place(results: list[Any], result: ChunkResult, errors: Errors, relay: Relay) -> Outcome | None:
    """Put a chunk's values in their slots; with ``errors="raise"`` return its first
    failure, raised once every task before it has come back (so that what they printed
    comes out first, and a lower failure wins, as in a loop)."""
    indices = result.indices
    if isinstance(indices, range) and indices.step == 1:
        results[indices.start : indices.stop] = result.values
    else:
        for index, value in zip(indices, result.values, strict=True):
            results[index] = value
    for outcome in result.outcomes() if result.errors else ():
        if outcome.ok:
            continue
        if errors == "raise":
            return outcome
        results[outcome.index] = _value(outcome, errors, relay)
    return None


def _chunks(fn, items, star, plan, chunk_size, seed, tick=None) -> Iterator[ChunkResult]:
    if not callable(fn):
        raise ConfigError(f"the first argument must be a function, not {fn!r}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ConfigError(f"chunk_size must be a positive whole number, not {chunk_size!r}")
    if seed is not None and (not isinstance(seed, int) or seed < 0):
        raise ConfigError(f"seed must be a non-negative whole number, not {seed!r}")
    levels = current_levels()
    chosen = plan if plan is not None else levels[0]
    if not isinstance(chosen, Plan):
        raise ConfigError(f"plan must be a plan such as cf.processes(), not {chosen!r}")
    inner = levels[1:]
    whole = chosen.map_chunks(
        fn, items, star=star, inner=inner, chunk_size=chunk_size, seed=seed
    )  # a plan that runs the whole map its own way (a durable job)
    if whole is not None:
        return whole
    return run_chunks(
        fn, items, plan=chosen, inner=inner, star=star, chunk_size=chunk_size, seed=seed, tick=tick
    )


def _value(outcome: Outcome, errors: Errors, relay: Relay) -> Any:
    if outcome.ok:
        return outcome.value
    exc = rebuild_exception(outcome.error, outcome.index)
    if errors == "return":
        return Failure(exc, outcome.error.traceback, outcome.index, relay.output_of(outcome.index))
    relay.replay_through(outcome.index)  # what came before the failure, as in a loop
    raise exc


def _check_errors(errors: str) -> None:
    if errors not in ("raise", "return"):
        raise ConfigError(f'errors must be "raise" or "return", not {errors!r}')


def _as_args(args: Iterable[Any]) -> tuple:
    try:
        return tuple(args)
    except TypeError as exc:
        raise ConfigError(f"starmap needs a tuple of arguments per task, not {args!r}") from exc
