"""The wheel of the running cheerful that cloud workers install."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import cheerful
from cheerful.durable.fleet.wheel import build_wheel, wheel_digest, wheel_name

VERSION = cheerful.__version__
DIST_INFO = f"cheerful-{VERSION}.dist-info"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_holds_the_package_and_its_metadata(wheel):
    assert wheel.name == f"cheerful-{VERSION}-py3-none-any.whl" == wheel_name()
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        infos = z.infolist()
        metadata = Parser().parsestr(z.read(f"{DIST_INFO}/METADATA").decode())
        wheel_file = Parser().parsestr(z.read(f"{DIST_INFO}/WHEEL").decode())
        entry_points = z.read(f"{DIST_INFO}/entry_points.txt").decode()

    package = Path(cheerful.__path__[0])
    sources = {
        "cheerful/" + p.relative_to(package).as_posix()
        for p in package.rglob("*.py")
        if "__pycache__" not in p.parts
    }
    packed = {n for n in names if n.startswith("cheerful/")}
    assert sources <= packed
    assert all((package / n.removeprefix("cheerful/")).is_file() for n in packed)
    for name in ("cheerful/__init__.py", "cheerful/cli/main.py", "cheerful/durable/fleet/wheel.py"):
        assert name in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert len(names) == len(set(names))
    assert names[-1] == f"{DIST_INFO}/RECORD"
    assert {n for n in names if not n.startswith("cheerful/")} >= {
        f"{DIST_INFO}/{f}" for f in ("METADATA", "WHEEL", "RECORD", "entry_points.txt")
    }
    assert not [n for n in names if n.endswith(("INSTALLER", "REQUESTED", "direct_url.json"))]
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}

    assert metadata["Name"] == "cheerful" and metadata["Version"] == VERSION
    requires = " ".join(metadata.get_all("Requires-Dist"))
    for dependency in ("cloudpickle", "rich", "click", "boto3"):
        assert dependency in requires
    assert "aws" in metadata.get_all("Provides-Extra")
    assert wheel_file["Wheel-Version"] == "1.0"
    assert wheel_file["Root-Is-Purelib"] == "true"
    assert wheel_file.get_all("Tag") == ["py3-none-any"]
    assert "[console_scripts]" in entry_points
    assert "cheerful = cheerful.cli:main" in entry_points


def test_record_lists_every_file_with_its_hash_and_size(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        rows = list(csv.reader(io.StringIO(z.read(f"{DIST_INFO}/RECORD").decode())))
        assert [row[0] for row in rows] == names
        for path, digest, size in rows:
            if path == f"{DIST_INFO}/RECORD":
                assert digest == size == ""
                continue
            data = z.read(path)
            algorithm, _, encoded = digest.partition("=")
            assert algorithm == "sha256" and "=" not in encoded
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert encoded == expected.decode()
            assert int(size) == len(data)


def test_the_same_code_gives_the_same_bytes(wheel, tmp_path):
    again = build_wheel(tmp_path / "again")
    assert again.read_bytes() == wheel.read_bytes()
    assert wheel_digest(again) == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert not [p for p in again.parent.iterdir() if p != again]  # no temporary left


@pytest.mark.slow
def test_pip_installs_the_wheel_in_a_fresh_venv(wheel, tmp_path):
    """A venv without the system's packages: pip installs the wheel (without its
    dependencies: no network), the console script exists and runs, and a wheel built
    from that regular install is byte for byte the one built from this (editable) one."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        timeout=120,
        env=env,
    )
    script = venv / "bin" / "cheerful"
    assert script.is_file() and os.access(script, os.X_OK)
    assert "cheerful.cli" in script.read_text()

    def run(code: str) -> str:
        done = subprocess.run(
            [python, "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    # The installed metadata, with no third-party import at all.
    out = run(
        "import importlib.metadata as m; d = m.distribution('cheerful'); "
        "print(d.version); print(sorted(e.name for e in d.entry_points)); "
        "print(' '.join(d.requires))"
    )
    version, scripts, requires = out.splitlines()
    assert version == VERSION and scripts == "['cheerful']"
    assert "cloudpickle" in requires and "click" in requires and "rich" in requires

    # cheerful itself needs cloudpickle, rich and click: take them from this interpreter's
    # site-packages, put *after* the venv's, so that cheerful is the venv's copy.
    import click
    import cloudpickle
    import rich

    deps = sorted({str(Path(m.__file__).parent.parent) for m in (cloudpickle, click, rich)})
    prelude = f"import sys; sys.path.extend({deps!r}); "
    out = run(
        prelude + "import cheerful, cheerful.durable.layout; print(cheerful.__version__); "
        "print(cheerful.__file__)"
    )
    version, where = out.splitlines()
    assert version == VERSION
    assert Path(where).is_relative_to(venv)
    help_text = run(
        prelude + f"sys.argv = ['cheerful', '--help']; import runpy; "
        f"runpy.run_path({str(script)!r}, run_name='__main__')"
    )
    assert "Usage" in help_text

    # A regular install builds the same wheel.
    rebuilt = run(
        prelude + "from cheerful.durable.fleet.wheel import build_wheel; "
        f"print(build_wheel({str(tmp_path / 'rebuilt')!r}))"
    ).strip()
    assert Path(rebuilt).read_bytes() == wheel.read_bytes()
