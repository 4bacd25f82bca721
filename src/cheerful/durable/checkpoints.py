"""Checkpoints of long tasks in durable jobs: save progress, resume it after a loss.

A task of a durable job may run on a spot instance that is taken back with two minutes'
notice. Such a task saves its progress with :func:`checkpoint` (at its own pace, and at
once when :func:`interrupted` turns True) and starts with :func:`restore`, which hands back
the latest state any earlier attempt of the same task saved::

    def simulate(i):
        state = cf.restore(default=None) or start(i)
        while not state.done:
            state = step(state)
            if cf.interrupted() or state.steps % 100 == 0:
                cf.checkpoint(state)
        return state.result

A checkpoint is stored at ``jobs/<job>/checkpoints/<ss>/<task>`` (the latest one wins) and
deleted with the job. Outside a durable job (``cf.map``, an Executor) there is nowhere to
keep one: :func:`checkpoint` does nothing and returns False, :func:`restore` returns its
default and :func:`interrupted` is False, so the same function runs everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cheerful.errors import ConfigError, ObjectNotFound
from cheerful.serialize import dumps, loads
from cheerful.task import current_task

from . import layout

__all__ = ["checkpoint", "interrupted", "restore"]


@dataclass(frozen=True)
class DurableContext:
    """Where the tasks of the chunk running in this process keep their checkpoints, and
    the flag the worker raises when it must leave (set by the worker's slot process)."""

    store: Any
    job: str
    leaving: Any  # a shared array of one byte: non-zero once the worker must leave


_context: DurableContext | None = None


def set_context(context: DurableContext | None) -> None:
    """Install (or, with None, remove) the durable context of this process's tasks."""
    global _context
    _context = context


def checkpoint(state: Any) -> bool:
    """Save ``state`` (anything cloudpickle can pickle) as the running task's latest
    checkpoint; return True if it was stored, False outside a durable job."""
    where = _where("checkpoint")
    if where is None:
        return False
    store, key = where
    store.put(key, dumps(state))
    return True


def restore(default: Any = None) -> Any:
    """The latest state an attempt of the running task saved with :func:`checkpoint`, or
    ``default`` when there is none (first attempt, or outside a durable job)."""
    where = _where("restore")
    if where is None:
        return default
    store, key = where
    try:
        return loads(store.get(key))
    except ObjectNotFound:
        return default


def interrupted() -> bool:
    """True once the worker running this task was asked to leave (a spot interruption
    notice, or a stop): save a checkpoint now, the task will be cut short and run again
    elsewhere."""
    context = _context
    return context is not None and bool(context.leaving[0])


def _where(what: str) -> tuple[Any, str] | None:
    context = _context
    if context is None:
        return None
    task = current_task()
    if task is None or task.index < 0:
        raise ConfigError(f"cf.{what}() works inside a task, not around it")
    return context.store, layout.checkpoint(context.job, task.index)
