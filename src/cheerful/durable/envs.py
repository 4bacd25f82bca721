"""Envs for script and command jobs: read an ``--envs`` file, or check a list of dicts.

One env per task, each a dict of names to values. Files, chosen by extension:

- ``.jsonl`` / ``.json-lines`` / ``.ndjson``: one JSON object per line; blank lines skipped.
  Lines end at a line feed (or carriage return + line feed) only: other characters Python
  counts as line breaks (U+2028, U+2029, U+0085, ...) may stand inside JSON strings and
  stay there, and line numbers count line feeds, as editors do;
- ``.json``: a JSON array of objects (or JSON lines);
- ``.csv``: a header of names, then one row per env; a value that looks like a whole
  number becomes an ``int``, a decimal number a ``float`` (``"007"`` stays a string),
  anything else a ``str``. A whole number too long for Python's int-string conversion
  limit (``sys.get_int_max_str_digits()``, 4300 digits by default) stays a ``str``, digits
  intact: ``int(value)`` after raising the limit makes it a number.

Other extensions are sniffed from the first character (``{`` JSON lines, ``[`` a JSON
array, else CSV). Every problem is a :class:`~cheerful.errors.ConfigError` naming the file
and line (``envs.jsonl line 7: not a JSON object: ...``), or ``env 2`` for the third dict of
a list, raised before anything is submitted.

Names: in script mode the env's names become the script's globals, so each must be a
Python identifier, not a keyword, and not a dunder name (``__builtins__``, ``__name__``,
``__file__``: anything starting and ending with ``__``) that would replace what Python sets.
In command mode each becomes an environment variable: letters, digits and ``_``, not
starting with a digit (so no ``=``, no NUL). Values: a command-mode value becomes the text
``str(value)``, which must hold no NUL character, encode to bytes for the operating system,
and keep ``NAME=value`` under Linux's 128 KiB limit on one environment variable.
"""

from __future__ import annotations

import csv
import io
import json
import keyword
import os
import re
import unicodedata
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
_SCRIPT_RULE = "a Python identifier, not a keyword, not starting and ending with '__'"
_COMMAND_RULE = "letters, digits and '_', not starting with a digit; no '=', no NUL"
_LINE_END = re.compile(r"\r?\n")

ENV_VAR_LIMIT = 128 * 1024
"""Bytes of ``NAME=value`` plus its final NUL that Linux takes for one environment variable
(``MAX_ARG_STRLEN``); a longer one makes the command fail with "Argument list too long"."""


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
    for key, value in env.items():
        if not isinstance(key, str):
            raise ConfigError(f"{place}: key {key!r} is not a string")
        if kind == "script":
            _check_script_name(place, key)
        else:
            _check_variable(place, key, value)


def _check_script_name(place: str, key: str) -> None:
    if not key.isidentifier() or keyword.iskeyword(key):
        raise ConfigError(
            f"{place}: {key!r} is not a valid Python name, so a script cannot use it "
            f"(script mode: {_SCRIPT_RULE})"
        )
    if key.startswith("__") and key.endswith("__"):
        raise ConfigError(
            f"{place}: {key!r} would replace a name Python sets for the script "
            f"(script mode: {_SCRIPT_RULE})"
        )
    if not key.isascii() and unicodedata.normalize("NFKC", key) != key:
        spelled = unicodedata.normalize("NFKC", key)
        raise ConfigError(
            f"{place}: {key!r} reads as {spelled!r} in a script's source, so the script "
            f"cannot use it; name it {spelled!r}"
        )


def _check_variable(place: str, key: str, value: Any) -> None:
    if not _ENV_VAR.fullmatch(key):
        raise ConfigError(
            f"{place}: {key!r} is not a valid environment variable name "
            f"(command mode: {_COMMAND_RULE})"
        )
    try:
        text = str(value)
    except Exception as exc:  # e.g. an int over the int-string conversion limit
        raise ConfigError(
            f"{place}: the value of {key!r} cannot be turned into text for an environment "
            f"variable: {type(exc).__name__}: {_short(str(exc))}"
        ) from exc
    if "\x00" in text:
        raise ConfigError(
            f"{place}: the value of {key!r} holds a NUL character (\\x00), which an "
            f"environment variable cannot hold: {_short(repr(text))}"
        )
    try:  # the bytes subprocess makes of it (the name is ASCII)
        size = len(key) + 1 + (len(text) if text.isascii() else len(os.fsencode(text)))
    except UnicodeError as exc:
        raise ConfigError(
            f"{place}: the value of {key!r} cannot be encoded for an environment variable: {exc}"
        ) from exc
    if size >= ENV_VAR_LIMIT:
        raise ConfigError(
            f"{place}: the value of {key!r} is too long for an environment variable: "
            f"{key}=<value> is {size:,} bytes, Linux takes at most {ENV_VAR_LIMIT - 1:,}. "
            "Put the value in a file and pass the file's name instead"
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
    for number, line in enumerate(_LINE_END.split(text), start=1):
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
        try:
            return int(text)
        except ValueError:  # over the int-string conversion limit: keep the digits as text
            return cell
    if _FLOAT.fullmatch(text):
        return float(text)
    return cell


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."
