"""The public surface: exactly these names, each documented; a light import."""

from __future__ import annotations

import inspect
import subprocess
import sys

import cheerful

EXPECTED = [
    "BackendError",
    "BrokenPlan",
    "CheerfulError",
    "CommandFailed",
    "CommandResult",
    "ConfigError",
    "Executor",
    "Failure",
    "FleetError",
    "FunctionTooLarge",
    "HostUnreachable",
    "Job",
    "JobError",
    "JobFailed",
    "JobInterrupted",
    "JobNotFound",
    "JobStatus",
    "LargeFunctionWarning",
    "ObjectNotFound",
    "Plan",
    "QueueError",
    "SerializationError",
    "StoreError",
    "TaskError",
    "TaskFailure",
    "TaskTimeout",
    "UnseededRandomWarning",
    "WaitTimeout",
    "WorkerCrashed",
    "__version__",
    "checkpoint",
    "cloud_workers",
    "dask",
    "durable_jobs",
    "fleet",
    "imap",
    "interrupted",
    "jobs",
    "map",
    "output_dir",
    "plan",
    "processes",
    "restore",
    "sequential",
    "ssh",
    "starmap",
    "submit",
    "submit_command",
    "submit_script",
    "task_progress",
    "task_rng",
]


def test_all_is_exactly_the_expected_names():
    assert cheerful.__all__ == EXPECTED


def test_all_is_sorted_and_every_name_exists():
    assert cheerful.__all__ == sorted(cheerful.__all__)
    for name in cheerful.__all__:
        assert hasattr(cheerful, name), name


def test_no_other_public_names_leak():
    public = {n for n in vars(cheerful) if not n.startswith("_") and not _is_module(n)}
    assert public <= set(EXPECTED)


def _is_module(name: str) -> bool:
    return inspect.ismodule(getattr(cheerful, name))


def test_every_name_has_a_docstring():
    for name in cheerful.__all__:
        obj = getattr(cheerful, name)
        if isinstance(obj, str):
            continue
        assert (obj.__doc__ or "").strip(), name


def test_version_is_a_string():
    assert isinstance(cheerful.__version__, str) and cheerful.__version__


def test_import_is_light():
    """``import cheerful`` loads nothing a call does not need; ``cf.map`` loads the driven
    side only (no terminal UI, command line, AWS or SQLite)."""
    heavy = (
        "{'rich', 'click', 'boto3', 'sqlite3', 'concurrent.futures', 'multiprocessing', "
        "'cheerful.driven', 'cheerful.durable', 'cloudpickle'}"
    )
    code = f"import sys, cheerful; print(sorted({heavy} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    mapped = (
        "import sys, cheerful as cf; cf.map(abs, [-1]); "
        "print(sorted({'rich', 'click', 'boto3', 'sqlite3', 'cheerful.durable', "
        "'concurrent.futures', 'dataclasses', 'cloudpickle', 'traceback'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", mapped], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_cloudpickle_loads_only_for_what_plain_pickle_cannot_send():
    """A module's function pickles by name, and a script's function or a lambda by value
    through the C pickler (cloudpickle stays unloaded); a class defined in the script
    needs cloudpickle, and gets it."""
    code = (
        "import sys, cheerful as cf\n"
        "def f(x): return x + 1\n"
        "class Box:\n"
        "    def __init__(self, v): self.v = v\n"
        "def boxed(x): return Box(x).v\n"
        "print(cf.map(abs, [-1]), cf.map(f, [1]), cf.map(lambda x: x + 2, [1]), "
        "'cloudpickle' in sys.modules)\n"
        "print(cf.map(boxed, [3]), 'cloudpickle' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[1] [2] [3] False", "[3] True"]


def test_command_line_help():
    done = subprocess.run(
        [sys.executable, "-m", "cheerful", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout
