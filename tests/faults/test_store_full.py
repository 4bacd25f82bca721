"""A full disk under the local store: a failed write raises StoreError and leaves no
temporary file behind (once seen: 607 ``.tmp`` files after ENOSPC).

A real full disk: a 20 MiB tmpfs, filled up. Skipped where mounting is not permitted.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from cheerful.durable.stores.local import LocalStore
from cheerful.errors import StoreError

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("mount") is None,
    reason="needs Linux and mount(8) for a small tmpfs",
)

SIZES = [10, 200_000]  # written at close (buffered) / at write (larger than the buffer)


@pytest.fixture
def full_disk(tmp_path):
    """A 20 MiB tmpfs with a few keys in it, then filled to the last byte."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        store = LocalStore(where / "store")
        store.put("jobs/j/manifest.json", b"{}")
        store.put("jobs/j/results/00/0", b"first")
        _fill(where / "filler")
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(path: Path) -> None:
    """Write to ``path`` until the file system is full."""
    block = b"\0" * (1 << 20)
    with open(path, "wb", buffering=0) as file:
        try:
            while True:
                file.write(block)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    with open(path, "ab", buffering=0) as file:  # the last partial block's bytes too
        try:
            while True:
                file.write(b"\0" * 512)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


def _temp_files(root: Path) -> list[str]:
    return [
        os.path.join(d, name) for d, _, names in os.walk(root) for name in names if ".tmp" in name
    ]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("key", ["jobs/j/results/00/1", "jobs/j/logs/00/new.1"])
def test_put_on_a_full_disk_leaves_no_temporary_file(full_disk, size, key):
    store = LocalStore(full_disk / "store")
    for _ in range(20):  # each failed write once left a file behind
        with pytest.raises(StoreError):
            store.put(key, os.urandom(size))
    assert _temp_files(full_disk) == []
    assert not store.exists(key)
    assert store.get("jobs/j/results/00/0") == b"first"  # what was there is intact


@pytest.mark.parametrize("size", SIZES)
def test_put_if_absent_on_a_full_disk_leaves_no_temporary_file(full_disk, size):
    store = LocalStore(full_disk / "store")
    for _ in range(20):
        with pytest.raises(StoreError):
            store.put_if_absent("jobs/j/results/00/2", os.urandom(size))
    assert _temp_files(full_disk) == []
    assert store.put_if_absent("jobs/j/results/00/0", b"second") is False  # no write: fine
    assert _temp_files(full_disk) == []


def test_fsync_put_on_a_full_disk_leaves_no_temporary_file(full_disk):
    store = LocalStore(full_disk / "store", fsync=True)
    with pytest.raises(StoreError):
        store.put("jobs/j/results/00/3", b"x" * 1000)
    assert _temp_files(full_disk) == []


def test_a_failed_rename_leaves_no_temporary_file(tmp_path):
    """The value is written but cannot take its key's name: a directory holds it."""
    store = LocalStore(tmp_path / "store")
    (tmp_path / "store" / "jobs" / "j" / "taken" / "inside").mkdir(parents=True)
    with pytest.raises(StoreError):
        store.put("jobs/j/taken", b"value")
    assert _temp_files(tmp_path) == []


def test_writes_work_again_once_there_is_room(full_disk):
    store = LocalStore(full_disk / "store")
    with pytest.raises(StoreError):
        store.put("jobs/j/results/00/4", b"y" * 100_000)
    (full_disk / "filler").unlink()
    store.put("jobs/j/results/00/4", b"y" * 100_000)
    assert store.get("jobs/j/results/00/4") == b"y" * 100_000
    assert _temp_files(full_disk) == []


def test_the_fixture_really_fills_the_disk(full_disk):
    with pytest.raises(OSError) as caught:
        (full_disk / f"probe-{uuid.uuid4().hex}").write_bytes(b"x" * 4096)
    assert caught.value.errno == errno.ENOSPC


# --- a worker whose store is full ------------------------------------------------------


def _slow_double(x):
    return 2 * x


@pytest.fixture
def full_backend(tmp_path):
    """A local backend with a job submitted, whose store (not its queue) then moves to a
    20 MiB tmpfs that is filled up."""
    import cheerful as cf

    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        url = f"local://{tmp_path}/backend"
        job = cf.submit(_slow_double, range(6), backend=url, chunk_size=2)
        shutil.move(tmp_path / "backend" / "store", where / "store")
        (tmp_path / "backend" / "store").symlink_to(where / "store")
        _fill(where / "filler")
        yield url, job, where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_worker_whose_store_is_full_backs_off_says_so_and_leaves(full_backend):
    """It reports one clear error, does not hammer the disk, exits with code 3 after its
    --store-timeout, puts back what it held, and leaves no temporary file."""
    url, job, where = full_backend
    here = os.path.dirname(__file__)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, "-m", "cheerful", "worker", "--backend", url, "--job", job.id]
    argv += ["--slots", "1", "--store-timeout", "4", "--visibility", "30"]
    started = __import__("time").monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    took = __import__("time").monotonic() - started
    assert done.returncode == 3, done.stderr
    assert took < 30, took
    lines = [line for line in done.stderr.splitlines() if line.startswith("cheerful worker:")]
    assert "the store failed" in done.stderr and "No space left on device" in done.stderr
    assert len(lines) <= 4, done.stderr  # one clear error, not one a write
    assert "leaving" in done.stderr and "(store failing)" in done.stderr
    assert _temp_files(where / "store") == []
    os.remove(where / "filler")  # room again: the chunks it held run elsewhere
    from cheerful.durable.backends import open_backend

    with open_backend(url) as backend:
        assert backend.queue.counts(job.id).in_flight == 0  # released, not left hanging
    again = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0, again.stderr
    assert job.results() == [0, 2, 4, 6, 8, 10]
