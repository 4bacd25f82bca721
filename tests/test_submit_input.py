"""What a user hands to submit: bad envs are refused at submit, with their place, and
nothing is stored; odd but valid envs run; tracebacks name the submitting script's lines.

Jobs run on an embedded backend under tmp_path, by the stand-in worker of
``durable_helpers.drain`` or by the real worker (``run_worker``) in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

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


def nothing_stored(backend) -> bool:
    return list(backend.store.list()) == [] and backend.queue.counts().visible == 0


# --- bad envs: a ConfigError at submit, naming the place ---------------------------------


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("envs.jsonl", '{"A": 1}\n{"A": 2}\n{"A": "x\\u0000"}\n', "envs.jsonl line 3: the value"),
        ("envs.csv", "A,B\n1,2\n3,x\x00y\n", "envs.csv line 3: the value of 'B' holds a NUL"),
        ("envs.jsonl", '{"A": 1}\n{"A": "\\udfff\\ud800"}\n', "envs.jsonl line 2: the value"),
        ("envs.jsonl", '{"A": 1}\n{"A=B": 2}\n', "envs.jsonl line 2: 'A=B' is not a valid env"),
    ],
)
def test_command_envs_that_cannot_be_environment_variables(backend, tmp_path, name, text, words):
    envs = tmp_path / name
    envs.write_text(text, encoding="utf-8")
    with pytest.raises(cf.ConfigError, match=words):
        cf.submit_command("echo $A", envs, backend=backend)
    assert nothing_stored(backend)


@pytest.mark.parametrize(
    ("envs", "words"),
    [
        ([{"A": 1}, {"A": 2}, {"A": "nul\x00"}], "env 2: the value of 'A' holds a NUL"),
        ([{"A": 1}, {"A": 10**5000}], "env 1: the value of 'A' cannot be turned into text"),
        ([{"A": "x" * 200_000}], "env 0: the value of 'A' is too long"),
    ],
)
def test_command_env_dicts_that_cannot_be_environment_variables(backend, envs, words):
    with pytest.raises(cf.ConfigError, match=words):
        cf.submit_command(["printenv", "A"], envs, backend=backend)
    assert nothing_stored(backend)


@pytest.mark.parametrize("name", ["__builtins__", "__name__", "__file__"])
def test_script_envs_must_not_replace_python_names(backend, tmp_path, name):
    script = tmp_path / "s.py"
    script.write_text("result = i\n")
    with pytest.raises(cf.ConfigError, match=f"env 1: '{name}' would replace a name Python"):
        cf.submit_script(script, [{"i": 1}, {"i": 2, name: "x"}], backend=backend)
    envs = tmp_path / "envs.csv"
    envs.write_text(f"i,{name}\n1,x\n")
    with pytest.raises(cf.ConfigError, match=f"envs.csv line 2: '{name}' would replace"):
        cf.submit_script(script, envs, backend=backend)
    assert nothing_stored(backend)


def test_the_cli_reports_a_bad_value_with_its_line_and_submits_nothing(tmp_path):
    url = f"local://{tmp_path}/backend"
    envs = tmp_path / "envs.csv"
    envs.write_text("A\n1\nx\x00y\n")
    result = CliRunner().invoke(
        main, ["submit", "--command", "echo $A", "--envs", str(envs), "--backend", url]
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: envs.csv line 3: the value of 'A' holds a NUL")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    with open_backend(url) as backend:
        assert nothing_stored(backend)


# --- odd but valid envs run -------------------------------------------------------------


def test_a_json_line_with_unicode_line_separators_runs(backend, tmp_path):
    envs = tmp_path / "envs.jsonl"
    envs.write_text('{"S": "a\u2028b"}\n{"S": "c\u2029d\x85e"}\n', encoding="utf-8")
    job = cf.submit_command('printf "%s" "$S"', envs, backend=backend)
    drain(backend)
    assert [r.stdout for r in job.results()] == ["a\u2028b", "c\u2029d\x85e"]


def test_a_csv_number_too_long_for_int_reaches_the_script_as_its_digits(tmp_path):
    url = f"local://{tmp_path}/backend"
    script = tmp_path / "s.py"
    script.write_text("result = (type(n).__name__, len(n), i)\n")
    envs = tmp_path / "envs.csv"
    envs.write_text("i,n\n1," + "9" * 5000 + "\n")
    result = CliRunner().invoke(
        main, ["submit", str(script), "--envs", str(envs), "--backend", url]
    )
    assert result.exit_code == 0, result.output
    with open_backend(url) as backend:
        drain(backend)
        assert cf.Job.attach(result.stdout.strip(), backend=backend).results() == [("str", 5000, 1)]


# --- tracebacks of functions submitted from a script name the script --------------------


SCRIPT = """\
import sys

import cheerful as cf
from cheerful.durable.worker import run_worker


def fails(i):
    return 1 / i


if __name__ == "__main__":
    job = cf.submit(fails, [0], backend=sys.argv[1], retries=0)
    if sys.argv[2] == "run":
        run_worker(job.backend, job=job.id, slots=1, idle_exit=0.5)
    print(job.id)
"""


def python(*args: str, cwd) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_traceback_names_the_scripts_file_line_and_source(tmp_path):
    script = tmp_path / "analysis.py"
    script.write_text(SCRIPT)
    url = f"local://{tmp_path}/backend"
    job_id = python("analysis.py", url, "run", cwd=tmp_path).strip()
    with open_backend(url) as backend:
        (failure,) = cf.Job.attach(job_id, backend=backend).failures()
    assert f'File "{script}", line 8, in fails' in failure.traceback
    assert "    return 1 / i\n" in failure.traceback
    assert "<dynamic-code>" not in failure.traceback


def test_the_traceback_names_the_file_and_line_where_the_worker_lacks_the_file(tmp_path):
    script = tmp_path / "analysis.py"
    script.write_text(SCRIPT)
    url = f"local://{tmp_path}/backend"
    job_id = python(str(script), url, "submit", cwd=tmp_path).strip()
    script.unlink()  # as on a worker of another machine
    worker = textwrap.dedent(f"""
        from cheerful.durable.worker import run_worker
        run_worker({url!r}, job={job_id!r}, slots=1, idle_exit=0.5)
    """)
    python("-c", worker, cwd=tmp_path)
    with open_backend(url) as backend:
        (failure,) = cf.Job.attach(job_id, backend=backend).failures()
    assert f'File "{script}", line 8, in fails\nZeroDivisionError' in failure.traceback


def test_nested_functions_keep_their_file_and_line_too(backend, tmp_path):
    script = tmp_path / "nested.py"
    script.write_text(
        textwrap.dedent("""\
        import cheerful as cf


        def outer(i):
            def inner(j):
                return [1 / k for k in range(j)]
            return inner(i + 1)


        job = cf.submit(outer, [0], backend=BACKEND, retries=0)
    """)
    )
    namespace = {"__name__": "__main__", "BACKEND": backend}
    exec(compile(script.read_text(), str(script), "exec"), namespace)  # as `python nested.py`
    drain(backend)
    (failure,) = namespace["job"].failures()
    lines = [line.strip() for line in failure.traceback.splitlines()]
    assert f'File "{script}", line 7, in outer' in lines
    assert f'File "{script}", line 6, in inner' in lines
    assert "return [1 / k for k in range(j)]" in lines
    assert json.dumps(failure.traceback).count("<dynamic-code>") == 0
