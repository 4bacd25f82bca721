"""Real sshd servers for the ssh plan's tests: on loopback, and in network namespaces.

Each server is Debian's ``sshd -D -e`` with its own config, host key and authorized client
key in a temp dir; it sets ``XDG_CACHE_HOME`` for its sessions, so the code cheerful ships
lands in the test's directory, not in ``~/.cache``. A namespaced host gets a veth pair
(``10.200.N.1`` outside, ``10.200.N.2`` inside) and can be cut off with :meth:`Netns.cut`.
A safety route (``unreachable 10.200.0.0/16``) keeps test traffic on this machine if a
veth disappears.
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import cheerful as cf
from cheerful.driven.scheduler import release_pools

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SAFETY_ROUTE = ["unreachable", "10.200.0.0/16", "metric", "4000"]


@dataclass(frozen=True)
class Keys:
    """A client key pair, a second (unauthorized) one, and the client's known_hosts."""

    root: Path

    @property
    def client(self) -> Path:
        return self.root / "client"

    @property
    def stranger(self) -> Path:
        return self.root / "stranger"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def cache(self) -> Path:
        """The XDG_CACHE_HOME of every test host (they share it, like hosts on one NFS home)."""
        return self.root / "cache"


def make_keys(root: Path) -> Keys:
    """Generate the client and host keys under ``root``."""
    for name in ("client", "stranger", "host_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(root / name)],
            check=True,
        )
    (root / "authorized_keys").write_text((root / "client.pub").read_text())
    (root / "cache").mkdir()
    return Keys(root)


def sshd_available() -> str:
    """Why sshd tests cannot run here ("" when they can)."""
    if not os.path.exists(SSHD) or not shutil.which("ssh"):
        return "openssh-server / ssh client not installed (.ci/run installs them)"
    return ""


def netns_available() -> str:
    """Why network-namespace tests cannot run here ("" when they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not shutil.which("ip"):
        return "iproute2 is not installed"
    return sshd_available()


class Sshd:
    """One sshd process, optionally inside a network namespace."""

    def __init__(
        self,
        keys: Keys,
        address: str = "127.0.0.1",
        port: int | None = None,
        netns: str | None = None,
        cache: Path | None = None,
    ) -> None:
        self.keys, self.address, self.netns = keys, address, netns
        self.cache = cache or keys.cache
        self.port = port or _free_port()
        self.dir = keys.root / f"sshd-{address}-{self.port}"
        self.dir.mkdir()
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
        config = self.dir / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress {address}",
                    f"Port {self.port}",
                    f"HostKey {keys.root / 'host_key'}",
                    f"AuthorizedKeysFile {keys.root / 'authorized_keys'}",
                    f"PidFile {self.dir / 'sshd.pid'}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "PermitRootLogin prohibit-password",
                    "MaxSessions 64",
                    "MaxStartups 100:30:200",
                    f"SetEnv XDG_CACHE_HOME={self.cache}",
                ]
            )
            + "\n"
        )
        prefix = ["ip", "netns", "exec", netns] if netns else []
        self.log = open(self.dir / "sshd.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*prefix, SSHD, "-D", "-e", "-f", str(config)], stdout=self.log, stderr=self.log
        )
        _wait_for_port(address, self.port, self.proc, self.dir / "sshd.log")

    @property
    def host(self) -> str:
        """The host spec for cf.ssh: ``root@address:port``."""
        return f"root@{self.address}:{self.port}"

    def stop(self) -> None:
        """Stop sshd and kill every process of its sessions (agents and their workers):
        a session whose connection was cut would otherwise outlive it."""
        sessions = descendants(self.proc.pid)
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        kill_all(sessions + descendants(self.proc.pid))
        self.log.close()


def plan_options(keys: Keys) -> dict:
    """The cf.ssh keywords every test host needs (its key, known_hosts, this Python)."""
    return {
        "key": str(keys.client),
        "python": sys.executable,
        "ssh_options": (
            f"UserKnownHostsFile={keys.known_hosts}",
            "ServerAliveInterval=1",
            "ServerAliveCountMax=2",
        ),
        "connect_timeout": 5,
    }


def ssh_plan(keys: Keys, hosts: list[str], **options) -> cf.Plan:
    """``cf.ssh(hosts)`` with the test hosts' keywords."""
    return cf.ssh(hosts, **{**plan_options(keys), **options})


class Netns:
    """A network namespace joined to this one by a veth pair, with sshd inside."""

    def __init__(self, keys: Keys, subnet: int, cache: Path | None = None) -> None:
        tag = f"{os.getpid() % 100000}x{subnet}"
        self.name, self.outside, self.inside = f"cfh{tag}", f"cfo{tag}", f"cfi{tag}"
        self.address = f"10.200.{subnet}.2"
        _ip("netns", "add", self.name)
        try:
            _ip("link", "add", self.outside, "type", "veth", "peer", "name", self.inside)
            _ip("link", "set", self.inside, "netns", self.name)
            _ip("addr", "add", f"10.200.{subnet}.1/30", "dev", self.outside)
            _ip("link", "set", self.outside, "up")
            for args in (
                ("addr", "add", f"{self.address}/30", "dev", self.inside),
                ("link", "set", self.inside, "up"),
                ("link", "set", "lo", "up"),
            ):
                _ip("netns", "exec", self.name, "ip", *args)
            self.sshd = Sshd(keys, self.address, 22, netns=self.name, cache=cache)
        except BaseException:
            self.remove()
            raise

    @property
    def host(self) -> str:
        return self.sshd.host

    def cut(self) -> None:
        """Take the link down: the host is cut off, as if its cable were pulled."""
        _ip("link", "set", self.outside, "down")

    def restore(self) -> None:
        """Bring the link back up."""
        _ip("link", "set", self.outside, "up")

    def remove(self) -> None:
        """Stop sshd, kill every process left in the namespace (a cut host's agent and
        its sshd session), then delete the namespace (its veth pair goes with it)."""
        if hasattr(self, "sshd"):
            self.sshd.stop()
        kill_all(self.pids())
        subprocess.run(["ip", "link", "del", self.outside], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    def pids(self) -> list[int]:
        """Every process running in the namespace."""
        found = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True)
        return [int(pid) for pid in found.stdout.split() if pid.isdigit()]


def add_safety_route() -> bool:
    """Add the unreachable route for 10.200.0.0/16; True if this call added it."""
    present = subprocess.run(["ip", "route", "show", *SAFETY_ROUTE[:2]], capture_output=True)
    if present.stdout.strip():
        return False
    _ip("route", "replace", *SAFETY_ROUTE)
    return True


def remove_safety_route() -> None:
    """Remove the route :func:`add_safety_route` added."""
    subprocess.run(["ip", "route", "del", *SAFETY_ROUTE], capture_output=True)


def remote_processes(address: str = "") -> list[int]:
    """Pids of cheerful's processes on the hosts (agents and their workers, which are forks
    of the agent): every host, or the one at ``address`` (as in the processes'
    SSH_CONNECTION, e.g. ``"10.200.1.2"`` or ``"127.0.0.1 2222"``)."""
    pids = [pid for pid, argv in processes() if "exec(sys.stdin.buffer.read(" in " ".join(argv)]
    return [p for p in pids if p != os.getpid() and address in _ssh_connection(p)]


def processes() -> list[tuple[int, list[str]]]:
    """Every process of this machine with its command line (read from /proc, like pgrep)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if argv[0]:
                found.append((int(entry.name), argv[:-1] if argv[-1] == "" else argv))
    return found


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, ...), read from /proc."""
    children: dict[int, list[int]] = {}
    for child, _ in processes():
        children.setdefault(_parent(child), []).append(child)
    found, todo = [], list(children.get(pid, []))
    while todo:
        found.append(todo.pop())
        todo += children.get(found[-1], [])
    return found


def kill_all(pids: list[int], timeout: float = 10.0) -> None:
    """SIGKILL ``pids`` and wait until they are gone (or reaped zombies of others)."""
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:  # our own children must be reaped; others vanish once their parent reaps
        with contextlib.suppress(OSError):
            os.waitpid(pid, os.WNOHANG)
    wait_until(lambda: not [p for p in pids if _alive(p)], timeout, 0.02)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def agents(address: str = "") -> list[int]:
    """Pids of the agents among :func:`remote_processes` (not forked from another)."""
    pids = remote_processes(address)
    return [p for p in pids if _parent(p) not in pids]


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _ssh_connection(pid: int) -> str:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return ""
    for entry in environ:
        if entry.startswith(b"SSH_CONNECTION="):
            return entry.decode()
    return ""


def wait_until(condition, timeout: float = 15.0, step: float = 0.1) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while not (ok := condition()) and time.monotonic() < deadline:
        time.sleep(step)
    return bool(ok)


def subnet_base() -> int:
    """A block of 10.200.N.0/30 subnets unlikely to clash with another test run's."""
    return 1 + (os.getpid() % 60) * 4


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(address: str, port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited at start: {log.read_text()}")
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError(f"sshd did not listen on {address}:{port}: {log.read_text()}")


# --- fixtures (imported by the conftest files that need them) ---------------------------


@pytest.fixture(scope="session")
def ssh_keys(tmp_path_factory) -> Keys:
    """Client keys and the shared cache directory of the test hosts."""
    if reason := sshd_available():
        pytest.skip(reason)
    return make_keys(tmp_path_factory.mktemp("ssh"))


@pytest.fixture(scope="session")
def loopback_sshd(ssh_keys) -> Iterator[Sshd]:
    """A real sshd on 127.0.0.1, for the whole session."""
    server = Sshd(ssh_keys)
    try:
        yield server
    finally:
        release_pools()  # the kept pools' agents end before their sshd does
        server.stop()
