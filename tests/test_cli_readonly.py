"""Read-only commands (``status``, ``results``, ``logs``) never create a backend.

Once seen: ``cheerful status --backend local:///`` made ``/queue.sqlite3``, and
``cheerful status`` in a directory without ``.cheerful`` silently made an empty one. A path
that holds no backend is an error that names it; a real backend still answers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from cheerful.cli import main
from cheerful.durable.backends import open_backend
from cheerful.durable.stores.local import LocalStore
from cheerful.errors import ConfigError, StoreError
from durable_helpers import drain

READ_ONLY = [("status",), ("status", "job-x"), ("results", "job-x"), ("logs", "job-x", "0")]
NO_ENV = {"CHEERFUL_BACKEND": None}  # the default backend, whatever the caller's shell says


def cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], env=NO_ENV)


def _everything_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize("args", READ_ONLY)
def test_no_backend_here_is_an_error_and_creates_nothing(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    result = cli(*args)
    assert result.exit_code == 2, result.output
    where = tmp_path.resolve() / ".cheerful"
    assert result.stderr.startswith(
        f"Error: no cheerful backend at {where} (no queue.sqlite3 or store/ there): "
        "pass --backend, or run a job first"
    ), result.stderr
    assert "Traceback" not in result.output
    assert _everything_under(tmp_path) == []


@pytest.mark.parametrize("args", READ_ONLY)
def test_no_backend_at_the_url_is_an_error_and_creates_nothing(tmp_path, args):
    nothing = tmp_path / "nothing"
    result = cli(*args, "--backend", f"local://{nothing}")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"Error: no cheerful backend at {nothing} "), result.stderr
    assert not nothing.exists()
    assert _everything_under(tmp_path) == []


def test_an_empty_directory_is_no_backend_and_stays_empty(tmp_path):
    result = cli("status", "--backend", f"local://{tmp_path}")
    assert result.exit_code == 2
    assert "no queue.sqlite3 or store/ there" in result.stderr
    assert _everything_under(tmp_path) == []


def test_half_a_backend_names_what_is_missing(tmp_path):
    (tmp_path / "queue.sqlite3").touch()
    result = cli("status", "--backend", f"local://{tmp_path}")
    assert result.exit_code == 2
    assert f"no cheerful backend at {tmp_path} (no store/ there)" in result.stderr
    assert _everything_under(tmp_path) == ["queue.sqlite3"]


def test_status_of_the_filesystem_root_creates_nothing_there():
    """The case once seen: ``--backend local:///`` (a typo) made ``/queue.sqlite3``."""
    before = {name: Path("/", name).exists() for name in ("queue.sqlite3", "store")}
    if any(before.values()):
        pytest.skip(f"/ holds a backend's files already: {before}")
    try:
        result = cli("status", "--backend", "local:///")
        assert result.exit_code == 2
        assert result.stderr.startswith("Error: no cheerful backend at / ")
        assert not Path("/queue.sqlite3").exists() and not Path("/store").exists()
    finally:  # should the check fail, take back what it made
        for name in ("queue.sqlite3", "queue.sqlite3-wal", "queue.sqlite3-shm"):
            Path("/", name).unlink(missing_ok=True)
        if Path("/store").is_dir():
            os.rmdir("/store")


def test_read_only_commands_still_read_a_real_backend(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script, envs = tmp_path / "runme.py", tmp_path / "envs.jsonl"
    script.write_text('print(f"hello {i}")\nresult = i * 2\n')
    envs.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(3)))
    submitted = cli("submit", script, "--envs", envs)  # the default backend: ./.cheerful
    assert submitted.exit_code == 0, submitted.output
    job_id = submitted.stdout.strip()
    with open_backend("local") as backend:
        drain(backend)
    listing = cli("status")
    assert listing.exit_code == 0 and job_id in listing.stdout, listing.output
    one = cli("status", job_id)
    assert one.exit_code == 0 and "3 done, 0 failed" in one.stdout, one.output
    rows = [json.loads(line) for line in cli("results", job_id).stdout.splitlines()]
    assert [row["value"] for row in rows] == [0, 2, 4]
    log = cli("logs", job_id, "1")
    assert log.exit_code == 0 and log.stdout == "hello 1\n"
    url = f"local://{tmp_path / '.cheerful'}"
    assert cli("status", job_id, "--backend", url).exit_code == 0
    unknown = cli("status", "job-nope")
    assert unknown.exit_code == 2 and "no job 'job-nope'" in unknown.stderr


def test_open_backend_without_create_makes_nothing(tmp_path):
    nothing = tmp_path / "a" / "b"
    with pytest.raises(ConfigError, match=f"no cheerful backend at {nothing} "):
        open_backend(f"local://{nothing}", create=False)
    assert _everything_under(tmp_path) == []
    with open_backend(f"local://{nothing}") as made:  # create=True (the default) makes it
        assert made.queue.counts().visible == 0
    with open_backend(f"local://{nothing}", create=False) as again:
        assert again.url == made.url


def test_local_store_without_create_needs_its_directory(tmp_path):
    with pytest.raises(StoreError, match="no directory"):
        LocalStore(tmp_path / "store", create=False)
    assert not (tmp_path / "store").exists()
    LocalStore(tmp_path / "store")
    assert LocalStore(tmp_path / "store", create=False).list() is not None


def test_opening_an_s3_backend_makes_no_request():
    """Nothing listens on port 9: opening must not touch the network (or create)."""
    pytest.importorskip("boto3")
    url = "s3://no-such-bucket/p?region=us-east-1&endpoint_url=http://127.0.0.1:9"
    for create in (True, False):
        with open_backend(url, create=create) as backend:
            assert backend.url.startswith("s3://no-such-bucket/p?")
