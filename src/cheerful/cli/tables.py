"""Writing a job's results: JSON lines, a table (CSV, Parquet) or a pickled list.

JSON lines keep each task's result whole (``index``, ``ok``, ``value`` or ``error``) with
its ``status``, ``attempts``, ``seconds``, ``worker`` and ``env`` (its input, when the job
kept its inputs). CSV and Parquet are the flat table of :mod:`cheerful.durable.frame`: one
row per task, dict results spread into columns.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import pickle
import sys
from collections.abc import Iterator
from typing import Any

from cheerful.errors import ConfigError

from .console import err

__all__ = ["FORMATS", "format_of", "json_lines", "write_results"]

FORMATS = ("jsonl", "csv", "parquet", "pickle")
"""What ``cheerful results --format`` writes."""


def format_of(path: str | None, given: str | None = None) -> str:
    """The format to write: the one given, else by the file's suffix, else JSON lines."""
    if given:
        return given
    suffix = (path or "").rsplit(".", 1)[-1].lower() if path and "." in path else ""
    return {"csv": "csv", "parquet": "parquet", "pkl": "pickle", "pickle": "pickle"}.get(
        suffix, "jsonl"
    )


def write_results(job: Any, path: str | None, fmt: str, errors: str = "return") -> int:
    """Write ``job``'s results to ``path`` (None: standard output) in ``fmt``; return how
    many failed."""
    from cheerful.task import Failure

    values = job.results(errors=errors, wait=False)
    failed = sum(isinstance(v, Failure) for v in values)
    if fmt == "pickle":
        if path is None:
            raise ConfigError("--format pickle writes binary data: give --out FILE")
        with open(path, "wb") as file:
            pickle.dump(values, file, protocol=pickle.HIGHEST_PROTOCOL)
    elif fmt == "parquet":
        if path is None:
            raise ConfigError("--format parquet writes binary data: give --out FILE")
        try:
            job.results_frame().to_parquet(path, index=False)
        except ImportError as exc:
            raise ConfigError(f"--format parquet needs pyarrow: pip install pyarrow ({exc})") from exc
    else:
        from cheerful.durable.frame import result_rows, task_inputs

        rows = result_rows(job)
        text = _csv(rows) if fmt == "csv" else "".join(json_lines(values, rows, task_inputs(job)))
        if path is None:
            sys.stdout.write(text)
        else:
            with open(path, "w", encoding="utf-8", newline="") as file:
                file.write(text)
    if path is not None:
        err.print(f"wrote {len(values)} results ({failed} failed) to {path}")
    return failed


def json_lines(
    values: list[Any], rows: list[dict[str, Any]], inputs: list[Any] | None = None
) -> Iterator[str]:
    """Each task as a JSON line: its result or error, with its row's facts and its env
    (``inputs[i]``, when the job kept its inputs)."""
    from cheerful.task import Failure

    for index, (value, row) in enumerate(zip(values, rows, strict=True)):
        line = json.loads(_json_line(index, value, Failure))
        line.update({k: row.get(k) for k in ("status", "attempts", "seconds", "worker")})
        line["env"] = None if inputs is None else inputs[index]
        try:
            yield json.dumps(line, default=_plain) + "\n"
        except (TypeError, ValueError):  # an env JSON cannot hold
            yield json.dumps({**line, "env": repr(line["env"])}, default=_plain) + "\n"


def _json_line(index: int, value: Any, failure_type: type) -> str:
    """One result as a JSON object; a value JSON cannot hold is written as its repr."""
    if isinstance(value, failure_type):
        exc = value.exception
        return json.dumps({"index": index, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
    try:
        return json.dumps({"index": index, "ok": True, "value": value}, default=_plain)
    except (TypeError, ValueError):
        return json.dumps({"index": index, "ok": True, "value": repr(value), "repr": True})


def _csv(rows: list[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return out.getvalue()


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    try:
        return json.dumps(value, default=_plain)
    except (TypeError, ValueError):
        return repr(value)


def _plain(value: Any) -> Any:
    """JSON for numpy values (``tolist``) and dataclasses; else TypeError."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
