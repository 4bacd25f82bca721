"""Job files and task outputs: what a job ships (``--workdir``, ``--files``, the files a
command names) and what its tasks leave (``$CHEERFUL_OUTPUT_DIR``, ``cf.output_dir()``),
with real workers (``run_worker``) on the embedded backend; command results users can read.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

import cheerful as cf
from cheerful.cli import main
from cheerful.durable import files as job_files
from cheerful.durable import layout
from cheerful.durable.backends import open_backend
from cheerful.durable.worker import run_worker


@pytest.fixture
def url(tmp_path) -> str:
    return f"local://{tmp_path}/backend"


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project directory (the working directory of the test) with data and a script."""
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "data" / "table.csv").write_text("x\n1\n2\n3\n")
    (root / "notes.txt").write_text("kept\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: main\n")
    (root / "venv").mkdir()
    (root / "venv" / "pyvenv.cfg").write_text("home = /usr\n")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "x.pyc").write_bytes(b"\0")
    monkeypatch.chdir(root)
    return root


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def run_all(job) -> None:
    summary = run_worker(job.backend, job=job.id, slots=2)
    assert summary.reason == "job settled", summary


SCRIPT = """\
import os, cheerful as cf
rows = open("data/table.csv").read().split()[1:]
with open("data/table.csv", "a") as f:   # a task that scribbles in its directory
    f.write("scribble\\n")
with open(os.path.join(cf.output_dir(), f"part-{i}.txt"), "w") as f:
    f.write(f"task {i} saw {len(rows)} rows\\n")
result = (i, len(rows), os.path.basename(os.getcwd()))
"""


def test_a_script_job_runs_each_task_in_its_own_copy_of_the_workdir(project, url, tmp_path):
    script = tmp_path / "count.py"
    script.write_text(SCRIPT)
    job = cf.submit_script(script, [{"i": i} for i in range(4)], backend=url, workdir=project)
    shipped = job.manifest["files"]
    assert shipped["names"] == ["data/table.csv", "notes.txt"]  # .git, venv, caches left out
    run_all(job)
    assert [(i, n) for i, n, _ in job.results()] == [(i, 3) for i in range(4)]  # no scribbles
    assert (project / "data" / "table.csv").read_text() == "x\n1\n2\n3\n"  # here untouched
    assert job.files(2) == {"part-2.txt": b"task 2 saw 3 rows\n"}
    counts = job.download_files(tmp_path / "out")
    assert counts == dict.fromkeys(range(4), 1)
    assert (tmp_path / "out" / "3" / "part-3.txt").read_text() == "task 3 saw 3 rows\n"


def test_the_same_files_are_stored_once_for_every_job(project, url):
    first = cf.submit(len, ["a"], backend=url, workdir=project)
    with open_backend(url) as backend:
        key = layout.files_pack(first.manifest["files"]["digest"])
        stamp = os.stat(backend.store.root / key).st_mtime_ns
        second = cf.submit(len, ["b"], backend=backend, workdir=project)
        assert second.manifest["files"]["digest"] == first.manifest["files"]["digest"]
        assert os.stat(backend.store.root / key).st_mtime_ns == stamp  # not uploaded again
        assert len(list(backend.store.list("files"))) == 1


def test_a_command_ships_the_files_it_names_and_says_so(project, url):
    (project / "fit.sh").write_text(
        'echo "fitting $i on $(wc -l < data/table.csv) lines" >&2\n'
        'echo "model $i" > "$CHEERFUL_OUTPUT_DIR/model-$i.txt"\n'
        'echo "{\\"i\\": $i, \\"score\\": 0.$i}"\n'
    )
    envs = project / "envs.jsonl"
    envs.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(3)))
    submitted = cli(
        "submit", "--command", "sh fit.sh", "--envs", envs, "--files", "data",
        "--output", "json", "--backend", url,
    )  # fmt: skip
    assert submitted.exit_code == 0, submitted.output
    assert "shipped with the job: 2 file(s)" in submitted.stderr
    assert "data/table.csv, fit.sh" in submitted.stderr
    job = cf.Job.attach(submitted.stdout.strip(), url)
    run_all(job)
    assert job.results() == [{"i": i, "score": float(f"0.{i}")} for i in range(3)]
    assert job.logs(1) == "fitting 1 on 4 lines\n{\"i\": 1, \"score\": 0.1}\n"
    results = cli("results", job.id, "--backend", url, "--files", project.parent / "models")
    assert results.exit_code == 0, results.output
    assert json.loads(results.stdout.splitlines()[2])["value"] == {"i": 2, "score": 0.2}
    assert (project.parent / "models" / "0" / "model-0.txt").read_text() == "model 0\n"


def test_outputs_are_write_once(project, url):
    job = cf.submit_command('echo "$i" > "$CHEERFUL_OUTPUT_DIR/v.txt"', [{"i": 1}], backend=url)
    run_all(job)
    key = layout.output(job.id, 0, 1)
    with open_backend(url) as backend:
        assert not backend.store.put_if_absent(key, b"another run's files")
    assert job.files(0) == {"v.txt": b"1\n"}


def test_bad_job_files_are_refused_before_anything_is_stored(project, url, monkeypatch):
    with pytest.raises(cf.ConfigError, match="--files nowhere.csv: no such file"):
        cf.submit(len, ["a"], backend=url, files=["nowhere.csv"])
    with pytest.raises(cf.ConfigError, match="--workdir .*notes.txt: not a directory"):
        cf.submit(len, ["a"], backend=url, workdir=project / "notes.txt")
    monkeypatch.setattr(job_files, "MAX_FILES_BYTES", 5)
    with pytest.raises(cf.ConfigError, match="over the limit of 5 bytes"):
        cf.submit(len, ["a"], backend=url, workdir=project)
    assert cf.jobs(url) == []


def test_a_dry_run_lists_what_would_ship_and_submits_nothing(project, url):
    envs = project / "envs.jsonl"
    envs.write_text('{"i": 1}\n{"i": 2}\n')
    (project / "fit.sh").write_text("echo $i\n")
    dry = cli("run", "--command", "sh fit.sh", "--envs", envs, "--workdir", "data",
              "--backend", url, "--dry-run")  # fmt: skip
    assert dry.exit_code == 0, dry.output
    assert "would submit 2 task(s) of command 'sh fit.sh'" in dry.stdout
    assert "job files: 2 file(s)" in dry.stdout and "fit.sh" in dry.stdout
    assert "nothing was submitted" in dry.stderr
    assert not (project.parent / "backend").exists()


# --- command results users can read --------------------------------------------------


def test_a_failing_command_names_its_own_error(url):
    fails = "echo working; echo 'Error in fit(x): bad column' >&2; echo 'Execution halted' >&2; exit 1"
    job = cf.submit_command(fails, [{"i": 0}], backend=url, retries=0)
    run_all(job)
    (failure,) = job.failures()
    assert failure.message.splitlines()[0] == (
        f"Error in fit(x): bad column (command {fails!r} exited with code 1)"
    )
    log = job.logs(0)
    assert log.startswith("working\nError in fit(x): bad column\nExecution halted\n")
    assert "Traceback" not in log  # what the program printed, and how it ended
    shown = cli("status", job.id, "--backend", url)
    assert "Error in fit(x): bad column" in shown.stdout


def test_a_program_missing_on_the_worker_says_so(url):
    job = cf.submit_command(["no-such-program-here", "x"], [{"i": 0}], backend=url, retries=0)
    run_all(job)
    (failure,) = job.failures()
    assert "no-such-program-here: No such file or directory" in failure.message
    assert "not found on the worker" in failure.message
    shell = cf.submit_command("no-such-program-here x", [{"i": 0}], backend=url, retries=0)
    run_all(shell)
    assert "not found on the worker" in shell.failures()[0].message


def test_json_output_that_is_not_json_fails_the_task_clearly(url):
    job = cf.submit_command("echo not json", [{"i": 0}], backend=url, retries=0, output="json")
    run_all(job)
    assert "is not one JSON value" in job.failures()[0].message


def test_run_of_a_script_that_is_not_python_says_how_to_run_it(tmp_path):
    script = tmp_path / "runme.R"
    script.write_text("cat(1)\n")
    envs = tmp_path / "envs.jsonl"
    envs.write_text('{"i": 1}\n')
    done = cli("run", script, "--envs", envs, "--backend", f"local://{tmp_path}/b")
    assert done.exit_code == 2
    assert f'--command "Rscript {script}"' in done.output and "invalid syntax" not in done.output


# --- the seed's own job, in R --------------------------------------------------------------

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "loocv_r")


def _r_with_random_forest() -> bool:
    if shutil.which("Rscript") is None:
        return False
    probe = ["Rscript", "-e", "suppressPackageStartupMessages(library(randomForest))"]
    return subprocess.run(probe, capture_output=True).returncode == 0


@pytest.mark.skipif(not _r_with_random_forest(), reason="needs R with randomForest (r-cran-randomforest)")
def test_the_r_example_runs_as_its_readme_says(tmp_path, monkeypatch):
    monkeypatch.chdir(EXAMPLE)
    argv = [sys.executable, "-m", "cheerful", "run", "--command", "Rscript runme.R",
            "--envs", "envs.jsonl", "--output", "json", "--out", tmp_path / "results.jsonl",
            "--outputs", tmp_path / "models", "--backend", f"local://{tmp_path}/backend"]  # fmt: skip
    done = subprocess.run(list(map(str, argv)), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(lines) == 32 and all(line["ok"] for line in lines)
    first = lines[0]["value"]
    assert first["car"] == "Mazda RX4" and first["mpg"] == 21.0 and 15 < first["predicted"] < 27
    errors = [abs(v["value"]["mpg"] - v["value"]["predicted"]) for v in lines]
    assert sum(errors) / len(errors) < 4.0  # a random forest predicts mpg to a few units
    assert all((tmp_path / "models" / str(k) / "model.rds").stat().st_size > 1000 for k in range(32))
