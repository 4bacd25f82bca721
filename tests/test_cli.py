"""The ``cheerful`` command line: ``run`` end to end in real processes, the rest through
click's CliRunner on an embedded backend under tmp_path.

Jobs that only need running are run by ``durable_helpers.drain`` (in this process, fast);
``cheerful run`` and ``cheerful worker`` start real workers.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
import time

import pytest
from click.testing import CliRunner

import cheerful as cf
from cheerful.cli import main
from cheerful.durable.backends import open_backend
from durable_helpers import drain

SCRIPT = """\
print(f"task {i} says {word}")
if i == 3:
    raise ValueError(f"no good [/b]: {i}\\nsecond line")  # not rich markup
result = {"i": i, "square": i * i}
"""


@pytest.fixture
def url(tmp_path) -> str:
    return f"local://{tmp_path}/backend"


@pytest.fixture
def files(tmp_path):
    """A script (task 3 raises) and an envs file of 5 tasks."""
    script = tmp_path / "runme.py"
    script.write_text(SCRIPT)
    envs = tmp_path / "envs.jsonl"
    envs.write_text("".join(json.dumps({"i": i, "word": w}) + "\n" for i, w in enumerate("abcde")))
    return script, envs


def cli(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def core(row: dict) -> dict:
    """A result line without the facts beside it (status, attempts, seconds, worker, env)."""
    return {k: v for k, v in row.items() if k in ("index", "ok", "value", "error", "repr")}


def job_ids(url: str) -> list[str]:
    with open_backend(url) as backend:
        return [job.id for job in cf.jobs(backend)]


def submitted(url: str, *args) -> str:
    """Submit through the CLI, run the job in this process, return its id."""
    result = cli("submit", *args, "--backend", url)
    assert result.exit_code == 0, result.output
    job_id = result.stdout.strip()
    with open_backend(url) as backend:
        drain(backend)
    return job_id


# --- cheerful run, end to end ------------------------------------------------------------


def test_run_end_to_end(files, url, tmp_path):
    script, envs = files
    argv = [sys.executable, "-m", "cheerful", "run", script, "--envs", envs, "--backend", url]
    proc = subprocess.run(
        [*map(str, argv), "--retries", "0", "--slots", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr  # a task failed
    assert "4 done, 1 failed, 0 dead of 5 tasks" in proc.stderr
    (job_id,) = job_ids(url)
    assert f"cheerful status {job_id}" in proc.stderr
    assert f"cheerful logs {job_id} INDEX" in proc.stderr

    listing = cli("status", "--backend", url)
    assert listing.exit_code == 0
    assert job_id in listing.stdout and "runme.py" in listing.stdout and "failed" in listing.stdout

    one = cli("status", job_id, "--backend", url)
    assert one.exit_code == 0
    assert "4 done, 1 failed" in one.stdout
    assert "ValueError" in one.stdout and "no good [/b]: 3" in one.stdout
    assert "second line" not in one.stdout  # the message's first line only

    out = tmp_path / "results.jsonl"
    written = cli("results", job_id, "--out", out, "--backend", url)
    assert written.exit_code == 0, written.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["index"] for r in rows] == [0, 1, 2, 3, 4]
    assert core(rows[2]) == {"index": 2, "ok": True, "value": {"i": 2, "square": 4}}
    assert rows[3]["ok"] is False and "ValueError: no good [/b]: 3" in rows[3]["error"]

    log = cli("logs", job_id, "1", "--backend", url)
    assert log.exit_code == 0 and log.stdout == "task 1 says b\n"
    failed_log = cli("logs", job_id, "3", "--attempt", "1", "--backend", url)
    assert "task 3 says d" in failed_log.stdout and "ValueError" in failed_log.stdout


def test_run_succeeds_with_exit_code_zero(tmp_path, url):
    script = tmp_path / "ok.py"
    script.write_text("result = x * 10\n")
    envs = tmp_path / "envs.csv"
    envs.write_text("x\n1\n2\n3\n")
    proc = subprocess.run(
        [sys.executable, "-m", "cheerful", "run", str(script), "--envs", str(envs)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "CHEERFUL_BACKEND": url},
    )
    assert proc.returncode == 0, proc.stderr
    assert "3 done, 0 failed, 0 dead of 3 tasks" in proc.stderr
    (job_id,) = job_ids(url)
    assert cf.Job.attach(job_id, url).results(wait=False) == [10, 20, 30]


def test_run_stops_when_the_job_is_cancelled(tmp_path, url):
    script = tmp_path / "slow.py"
    script.write_text("import time\ntime.sleep(0.5)\nresult = i\n")
    envs = tmp_path / "envs.jsonl"
    envs.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(20)))
    argv = [sys.executable, "-m", "cheerful", "run", str(script), "--envs", str(envs)]
    with subprocess.Popen(
        [*argv, "--backend", url, "--slots", "1"], stderr=subprocess.PIPE, text=True
    ) as proc:
        deadline = time.monotonic() + 30
        while not job_ids(url) and time.monotonic() < deadline:
            time.sleep(0.05)
        (job_id,) = job_ids(url)
        assert cli("cancel", job_id, "--backend", url).exit_code == 0
        stderr = proc.communicate(timeout=60)[1]
    assert proc.returncode == 1, stderr
    assert f"job {job_id} was cancelled" in stderr


# --- bad input: a clean error, exit code 2, nothing submitted -----------------------------


@pytest.mark.parametrize(
    "name, text, where",
    [
        ("envs.jsonl", '{"i": 0}\n{"i": 1}\n{"i": 2,}\n', "envs.jsonl line 3"),
        ("envs.jsonl", '{"i": 0}\n[1, 2]\n', "envs.jsonl line 2"),
        ("envs.csv", "i,word\n0,a\n1\n", "envs.csv line 3"),
        ("envs.jsonl", '{"i": 0}\n{"not a name": 1}\n', "envs.jsonl line 2"),
    ],
)
@pytest.mark.parametrize("command", ["run", "submit"])
def test_bad_envs_file_is_reported_with_its_line_before_submitting(
    tmp_path, url, files, name, text, where, command
):
    script, _ = files
    envs = tmp_path / name
    envs.write_text(text)
    result = cli(command, script, "--envs", envs, "--backend", url)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {where}")
    assert result.stderr.count("\n") == 1  # one line, no traceback
    assert job_ids(url) == []


def test_missing_script_and_backend_errors_are_clean(tmp_path, url, files):
    _, envs = files
    missing = cli("run", tmp_path / "nope.py", "--envs", envs, "--backend", url)
    assert missing.exit_code == 2 and "nope.py" in missing.stderr
    assert "Traceback" not in missing.output
    bad = cli("status", "--backend", "ftp://somewhere")
    assert bad.exit_code == 2 and bad.stderr.startswith("Error: backend 'ftp://somewhere'")


@pytest.mark.parametrize(
    "args",
    [("status", "nope"), ("results", "nope"), ("logs", "nope", "0"), ("retry", "nope")],
)
def test_unknown_job_is_a_clear_error(url, files, args):
    submitted(url, files[0], "--envs", files[1])
    result = cli(*args, "--backend", url)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: no job 'nope' in backend {url}; known jobs: job-")
    assert "Traceback" not in result.output


# --- submit, results, logs, retry, cancel -------------------------------------------------


def test_submit_prints_the_id_and_how_to_start_workers(url, files):
    result = cli("submit", files[0], "--envs", files[1], "--backend", url, "--name", "loo")
    assert result.exit_code == 0, result.output
    job_id = result.stdout.strip()
    assert job_id.startswith("loo-") and job_ids(url) == [job_id]
    assert f"cheerful worker --job {job_id} --backend {url}" in result.stderr


def test_submit_needs_a_script_or_a_command_not_both(url, files):
    for args in ((), (files[0], "--command", "true")):
        result = cli("submit", *args, "--envs", files[1], "--backend", url)
        assert result.exit_code == 2 and "either SCRIPT or --command" in result.output
    assert job_ids(url) == []


def test_command_mode_and_the_backend_from_the_environment(url, files):
    env = {"CHEERFUL_BACKEND": url}
    result = cli("submit", "--command", "echo $word-$i", "--envs", files[1], env=env)
    assert result.exit_code == 0, result.output
    with open_backend(url) as backend:
        drain(backend)
    rows = cli("results", result.stdout.strip(), env=env).stdout.splitlines()
    row = json.loads(rows[1])
    assert {k: row[k] for k in ("index", "ok", "value")} == {
        "index": 1,
        "ok": True,
        "value": {"exit_code": 0, "stdout": "b-1\n"},
    }
    assert row["status"] == "done" and row["env"] == {"i": 1, "word": "b"}


def test_results_formats_and_errors(url, tmp_path):
    script = tmp_path / "odd.py"
    script.write_text(
        textwrap.dedent(
            """\
            import numpy as np
            if i == 4:
                raise KeyError(i)
            result = [{1, 2}, np.int64(7), np.arange(3), None][i]
            """
        )
    )
    envs = tmp_path / "envs.jsonl"
    envs.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(5)))
    job_id = submitted(url, script, "--envs", envs, "--retries", "0")

    rows = [
        json.loads(line) for line in cli("results", job_id, "--backend", url).stdout.splitlines()
    ]
    assert core(rows[0]) == {"index": 0, "ok": True, "value": "{1, 2}", "repr": True}
    assert rows[1]["value"] == 7 and rows[2]["value"] == [0, 1, 2] and rows[3]["value"] is None
    assert rows[4]["ok"] is False and rows[4]["error"].startswith("KeyError")

    raised = cli("results", job_id, "--errors", "raise", "--backend", url)
    assert raised.exit_code == 2 and "1 of 5 tasks failed" in raised.stderr

    assert cli("results", job_id, "--format", "pickle", "--backend", url).exit_code == 2
    out = tmp_path / "results.pkl"
    assert (
        cli("results", job_id, "--format", "pickle", "--out", out, "--backend", url).exit_code == 0
    )
    values = pickle.loads(out.read_bytes())
    assert values[0] == {1, 2} and isinstance(values[4], cf.Failure)


def test_logs_of_a_silent_task_and_a_missing_attempt(url, files):
    job_id = submitted(url, files[0], "--envs", files[1])
    assert cli("logs", job_id, "0", "--attempt", "9", "--backend", url).stdout == ""
    out_of_range = cli("logs", job_id, "99", "--backend", url)
    assert out_of_range.exit_code == 2 and "out of range" in out_of_range.stderr


def test_retry_then_cancel(url, files):
    job_id = submitted(url, files[0], "--envs", files[1], "--retries", "0")
    retried = cli("retry", job_id, "--backend", url)
    assert retried.exit_code == 0 and "sent 1 task of" in retried.stderr
    assert cli("cancel", job_id, "--backend", url).stderr.startswith(f"job {job_id} is cancelled")
    assert "cancelled already" in cli("cancel", job_id, "--backend", url).stderr
    assert "cancelled" in cli("status", "--backend", url).stdout


def test_worker_command_runs_a_job(url, files):
    submit = cli("submit", "--command", "echo $i", "--envs", files[1], "--backend", url)
    job_id = submit.stdout.strip()
    worker = cli("worker", "--backend", url, "--job", job_id, "--slots", "1", "--idle-exit", "0.5")
    assert worker.exit_code == 0, worker.output
    assert "stopped (job settled)" in worker.stderr and "5 task(s) done" in worker.stderr
    status = cli("status", job_id, "--backend", url)
    assert "5 done, 0 failed" in status.stdout and ": done" in status.stdout


def test_results_of_a_job_that_is_not_finished_is_an_error_unless_partial(files, url):
    script, envs = files
    submit = cli("submit", script, "--envs", envs, "--backend", url, "--chunk-size", "2")
    job_id = submit.stdout.strip()
    with open_backend(url) as backend:  # one chunk of three runs
        from durable_helpers import _handle

        (first,) = backend.queue.receive(1, visibility_s=60)
        _handle(backend, first.body, first.receipt, "w")
    result = cli("results", job_id, "--backend", url)
    assert result.exit_code == 2 and result.stdout == ""
    assert "is not finished" in result.stderr and "3 tasks of 5 have no result yet" in result.stderr
    assert f"cheerful results {job_id} --partial --backend" in result.stderr
    assert "job.wait" not in result.stderr  # advice for the command line, not Python
    partial = cli("results", job_id, "--backend", url, "--partial")
    assert partial.exit_code == 0, partial.output
    lines = [json.loads(line) for line in partial.stdout.splitlines()]
    assert [line["ok"] for line in lines] == [True, True, False, False, False]
    assert "no result yet" in lines[2]["error"] and "is not finished" in partial.stderr


def test_usage_and_counts_read_as_english(files, url):
    assert "Usage: main status [OPTIONS] [JOB]" in cli("status", "--help").output
    script, envs = files
    envs.write_text('{"i": 0, "word": "a"}\n')
    submit = cli("submit", script, "--envs", envs, "--backend", url)
    assert "submitted 1 task;" in submit.stderr
    job_id = submit.stdout.strip()
    status = cli("status", job_id, "--backend", url)
    assert "1 task: 0 done" in status.stdout and "0 workers reporting" in status.stdout


def test_retry_with_a_fixed_script(files, url, tmp_path):
    script, envs = files
    job_id = submitted(url, script, "--envs", envs, "--retries", "0")
    fixed = tmp_path / "fixed.py"
    fixed.write_text('print(f"fixed {i}")\nresult = {"i": i, "square": i * i}\n')
    first = cli("logs", job_id, "3", "--backend", url).stdout
    retried = cli("retry", job_id, "--backend", url, "--script", fixed)
    assert retried.exit_code == 0 and "sent 1 task of" in retried.stderr, retried.output
    again = cli("retry", job_id, "--backend", url)  # already sent, no outcome yet
    assert "no failed or dead tasks that are not being retried" in again.stderr
    with open_backend(url) as backend:
        drain(backend)
    lines = [json.loads(x) for x in cli("results", job_id, "--backend", url).stdout.splitlines()]
    assert [line["value"]["square"] for line in lines] == [0, 1, 4, 9, 16]
    assert cli("logs", job_id, "3", "--backend", url).stdout == "fixed 3\n"
    assert cli("logs", job_id, "3", "--attempt", "1", "--backend", url).stdout == first
    wrong = cli("retry", job_id, "--backend", url, "--command", "true")
    assert wrong.exit_code == 2 and "script=" in wrong.output
