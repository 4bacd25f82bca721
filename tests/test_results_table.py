"""A job's results as a table: one row per task with its env or input, its result spread
into columns, status, error, attempts, seconds and worker (``job.results_frame()``,
``cheerful results --format csv|parquet|jsonl``)."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

import cheerful as cf
from cheerful.cli import main
from cheerful.durable.backends import open_backend
from durable_helpers import drain


@pytest.fixture
def backend(tmp_path):
    with open_backend(f"local://{tmp_path}/backend") as backend:
        yield backend


def fit(env):
    if env["fold"] == 2:
        raise ValueError("fold 2 has no rows\nmore detail")
    return {"score": env["fold"] / 10, "fold": env["fold"] * 100, "status": "fine"}


def test_a_frame_has_one_row_per_task_with_its_env_result_and_outcome(backend):
    envs = [{"fold": k, "alpha": 0.5} for k in range(4)]
    job = cf.submit(fit, envs, backend=backend, retries=1, chunk_size=2)
    drain(backend)
    frame = job.results_frame()
    assert list(frame.columns) == [
        "task", "fold", "alpha", "score", "result.fold", "result.status",
        "status", "error_type", "error", "attempts", "seconds", "worker",
    ]  # fmt: skip
    assert frame["task"].tolist() == [0, 1, 2, 3]
    assert frame["status"].tolist() == ["done", "done", "failed", "done"]
    assert frame.loc[1, "score"] == 0.1 and frame.loc[3, "result.fold"] == 300
    failed = frame.loc[2]
    assert failed["error_type"] == "ValueError" and failed["error"] == "fold 2 has no rows"
    assert failed["attempts"] == 2 and frame.loc[0, "attempts"] == 1
    assert frame.groupby("alpha")["score"].mean().loc[0.5] == pytest.approx((0 + 0.1 + 0.3) / 3)


def test_results_as_csv_parquet_and_json_lines(backend, tmp_path):
    job = cf.submit_command(
        'echo "{\\"rmse\\": $i.5}"', [{"i": i} for i in range(3)], backend=backend,
        output="json",
    )  # fmt: skip
    drain(backend)
    runner = CliRunner()
    table = runner.invoke(main, ["results", job.id, "--backend", backend.url, "--format", "csv"])
    assert table.exit_code == 0, table.output
    rows = list(csv.DictReader(io.StringIO(table.stdout)))
    assert [(r["task"], r["i"], r["rmse"], r["status"]) for r in rows] == [
        ("0", "0", "0.5", "done"), ("1", "1", "1.5", "done"), ("2", "2", "2.5", "done"),
    ]  # fmt: skip
    out = tmp_path / "r.parquet"
    written = runner.invoke(main, ["results", job.id, "--backend", backend.url, "--out", str(out)])
    assert written.exit_code == 0, written.output
    import pandas as pd

    assert pd.read_parquet(out)["rmse"].tolist() == [0.5, 1.5, 2.5]
    lines = runner.invoke(main, ["results", job.id, "--backend", backend.url]).stdout
    first = json.loads(lines.splitlines()[0])
    assert first["value"] == {"rmse": 0.5} and first["env"] == {"i": 0}
    assert first["status"] == "done" and first["attempts"] == 1


def test_inputs_too_big_to_keep_leave_the_table_without_them(backend, monkeypatch):
    from cheerful.durable import submit as submitting

    monkeypatch.setattr(submitting, "ITEMS_KEPT_BYTES", 10)
    job = cf.submit(len, ["a long input", "another"], backend=backend)
    drain(backend)
    frame = job.results_frame()
    assert "input" not in frame.columns and frame["result"].tolist() == [12, 7]
