"""Envs for script and command jobs: read an ``--envs`` file, or check a list of dicts.

One env per task, each a dict of names to values. Files, chosen by extension:

- ``.jsonl`` / ``.json-lines`` / ``.ndjson``: one JSON object per line; blank lines skipped;
- ``.json``: a JSON array of objects (or JSON lines);
- ``.csv``: a header of names, then one row per env; a value that looks like a whole
  number becomes an ``int``, a decimal number a ``float`` (``"007"`` stays a string),
  anything else a ``str``.

Other extensions are sniffed from the first character (``{`` JSON lines, ``[`` a JSON
array, else CSV). Every problem is a :class:`~cheerful.errors.ConfigError` naming the file
and line (``envs.jsonl line 7: not a JSON object: ...``), raised before anything is
submitted.
"""

from __future__ import annotations

import csv
import io
import json
import keyword
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from cheerful.errors import ConfigError

__all__ = ["check_envs", "load_envs"]

Kind = Literal["script", "command"]

_JSON_LINES = {".jsonl", ".json-lines", ".jsonlines", ".ndjson"}
_INT = re.compile(r"[+-]?(0|[1-9][0-9]*)")
_FLOAT = re.compile(r"[+-]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+(?=[eE]))([eE][+-]?[0-9]+)?")
_ENV_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def load_envs(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The envs in the file at ``path`` (see the module docstring)."""
    return [env for _, env in _read(path)]


def check_envs(
    envs: str | os.PathLike[str] | Iterable[dict[str, Any]], kind: Kind
) -> list[dict[str, Any]]:
    """The envs of a ``kind`` job, from a file path or an iterable of dicts, validated.

    Script mode needs keys that are Python names; command mode, environment variable names.
    """
    if isinstance(envs, (str, os.PathLike)):
        located = _read(envs)
    else:
        located = [(f"env {i}", env) for i, env in enumerate(_as_list(envs))]
    if not located:
        raise ConfigError("envs is empty: give one env (a dict) per task")
    for place, env in located:
        _check_env(place, env, kind)
    return [env for _, env in located]


def _as_list(envs: Any) -> list[Any]:
    if isinstance(envs, (dict, bytes)):
        raise ConfigError("envs must be a list of dicts (one per task) or an envs file path")
    try:
        return list(envs)
    except TypeError as exc:
        raise ConfigError(f"envs must be a list of dicts or a file path, not {envs!r}") from exc


def _check_env(place: str, env: Any, kind: Kind) -> None:
    if not isinstance(env, dict):
        raise ConfigError(f"{place}: an env is a dict of names to values, not {_short(env)}")
    for key in env:
        if not isinstance(key, str):
            raise ConfigError(f"{place}: key {key!r} is not a string")
        if kind == "script" and (not key.isidentifier() or keyword.iskeyword(key)):
            raise ConfigError(
                f"{place}: {key!r} is not a valid Python name, so a script cannot use it"
            )
        if kind == "command" and not _ENV_VAR.fullmatch(key):
            raise ConfigError(
                f"{place}: {key!r} is not a valid environment variable name "
                "(letters, digits and '_', not starting with a digit)"
            )


def _read(path: str | os.PathLike[str]) -> list[tuple[str, dict[str, Any]]]:
    """``(place, env)`` pairs of the file at ``path``; a place reads "envs.csv line 3"."""
    name = Path(path).name
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"envs file {os.fspath(path)!r} cannot be read: {exc}") from exc
    if not text.strip():
        raise ConfigError(f"{name}: the envs file is empty; write one env per task")
    parse = {"jsonl": _json_lines, "json": _json_array, "csv": _csv}[_format(path, text)]
    envs = parse(name, text)
    if not envs:
        raise ConfigError(f"{name}: the envs file has no envs; write one env per task")
    return envs


def _format(path: str | os.PathLike[str], text: str) -> str:
    suffix = Path(path).suffix.lower()
    first = text.lstrip()[:1]
    if suffix in _JSON_LINES:
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    if first == "[":
        return "json"
    return "jsonl" if first == "{" or suffix == ".json" else "csv"


def _json_lines(name: str, text: str) -> list[tuple[str, dict[str, Any]]]:
    envs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f"{name} line {number}: not valid JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise ConfigError(f"{name} line {number}: not a JSON object: {_short(line)}")
        envs.append((f"{name} line {number}", value))
    return envs


def _json_array(name: str, text: str) -> list[tuple[str, dict[str, Any]]]:
    try:
        values = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{name}: not valid JSON: {exc}") from exc
    if not isinstance(values, list):
        raise ConfigError(f"{name}: expected a JSON array of objects")
    places = [f"{name} item {i}" for i in range(len(values))]
    for place, value in zip(places, values, strict=True):
        if not isinstance(value, dict):
            raise ConfigError(f"{place}: not a JSON object: {_short(value)}")
    return list(zip(places, values, strict=True))


def _csv(name: str, text: str) -> list[tuple[str, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [column.strip() for column in next(reader)]
        _check_header(name, header)
        envs = []
        for row in reader:
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise ConfigError(
                    f"{name} line {reader.line_num}: {len(row)} values for the "
                    f"{len(header)} columns of the header"
                )
            env = {key: _convert(cell) for key, cell in zip(header, row, strict=True)}
            envs.append((f"{name} line {reader.line_num}", env))
    except csv.Error as exc:
        raise ConfigError(f"{name} line {reader.line_num}: not valid CSV: {exc}") from exc
    return envs


def _check_header(name: str, header: list[str]) -> None:
    if not all(header):
        raise ConfigError(f"{name} line 1: the header has an empty column name: {header!r}")
    seen = set()
    for column in header:
        if column in seen:
            raise ConfigError(f"{name} line 1: column {column!r} appears twice in the header")
        seen.add(column)


def _convert(cell: str) -> int | float | str:
    text = cell.strip()
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return cell


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."
