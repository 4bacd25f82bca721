"""A job's results as a table: one row per task, ready for pandas, CSV or Parquet.

Each row holds the task's number; its env's variables (script and command jobs) or input
(a dict input is spread into columns, anything else is one ``input`` column; kept when a
job's inputs are small, see ``ITEMS_KEPT_BYTES`` in :mod:`.submit`); its result (a dict, or
a command's JSON object, spread into columns, a name taken already gets ``result.``
before it; anything else is one ``result`` column); then ``status`` (done, failed, dead or
pending), ``error_type`` and ``error`` (the first line of the message), ``attempts``,
``seconds`` (the last attempt's) and ``worker``. Statisticians aggregate 10,000 folds with
one ``groupby``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cheerful.errors import ConfigError, ObjectNotFound
from cheerful.serialize import loads

from .records import FAILED, MISSING, read_view

__all__ = ["TAIL_COLUMNS", "result_rows", "results_frame", "task_inputs"]

TAIL_COLUMNS = ("status", "error_type", "error", "attempts", "seconds", "worker")
"""The columns every row ends with."""


def result_rows(job: Any) -> list[dict[str, Any]]:
    """One dict per task, in task order (see the module docstring)."""
    job._refresh()
    view = read_view(job.backend, job.id, job._plan())
    items = _items(job)
    rows = []
    for index in range(job.tasks):
        row: dict[str, Any] = {"task": index}
        if items is not None:
            _spread(row, items[index], "input")
        state = view.state[index]
        status = _status(state, index, view)
        if status == "done":
            _spread(row, _plain(view.values[index]), "result", prefix="result.")
        failure = view.failure(index) if status in ("failed", "dead") else None
        row.update(
            status=status,
            error_type=failure.type_name.rsplit(".", 1)[-1] if failure else None,
            error=_first_line(failure.message) if failure else None,
            attempts=view.attempts.get(index) if state != MISSING else None,
            seconds=view.seconds.get(index),
            worker=view.workers.get(index),
        )
        rows.append(row)
    return rows


def results_frame(job: Any) -> Any:
    """The rows as a ``pandas.DataFrame`` (``pip install 'cheerful[frame]'``)."""
    try:
        import pandas as pd
    except ImportError as exc:
        raise ConfigError(
            "results_frame() needs pandas: pip install 'cheerful[frame]' (or pandas)"
        ) from exc
    rows = result_rows(job)
    columns = list(dict.fromkeys(key for row in rows for key in row if key not in TAIL_COLUMNS))
    return pd.DataFrame(rows, columns=[*columns, *TAIL_COLUMNS])


def task_inputs(job: Any) -> list[Any] | None:
    """Every task's env or input, when the job kept them (None: too big to keep)."""
    return _items(job)


def _items(job: Any) -> list[Any] | None:
    key = job.manifest.get("items")
    if not key:
        return None
    try:
        return loads(job.backend.store.get(key))
    except ObjectNotFound:
        return None


def _status(state: int, index: int, view: Any) -> str:
    if index in view.dead:
        return "dead"
    if state == FAILED:
        return "failed"
    return "pending" if state == MISSING else "done"


def _spread(row: dict[str, Any], value: Any, name: str, prefix: str = "") -> None:
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        for key, item in value.items():
            row[f"{prefix}{key}" if key in row or key in TAIL_COLUMNS else key] = item
    else:
        row[f"{prefix}{name}" if name in row else name] = value


def _plain(value: Any) -> Any:
    """A dataclass result (a command's text result) as a dict, so its fields are columns."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def _first_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0] if text else ""
