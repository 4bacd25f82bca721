"""Who the ssh plan connects to, and how: hosts, options and the exact ``ssh`` command line.

:class:`SshSettings` is everything an ssh plan was given, checked; both the plan
(:mod:`.plan`) and its pool (:mod:`.pool`) read it. ssh takes the first value it is given
for an option: the user's options come first, then cheerful's defaults.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from cheerful.errors import ConfigError

__all__ = ["HostSpec", "SshSettings", "checked_settings"]


# ssh takes the first value it is given for an option: the user's come first, then these.
_DEFAULT_OPTIONS = (
    ("BatchMode", "yes"),  # never prompt: there is no terminal to answer on
    ("StrictHostKeyChecking", "accept-new"),
    ("ServerAliveInterval", "5"),
    ("ServerAliveCountMax", "3"),
)
_SPEC = re.compile(
    r"^(?:(?P<user>[^@\s]+)@)?(?:\[(?P<v6>[^\]\s]+)\]|(?P<host>[^@:\s\[\]]+))(?::(?P<port>\d+))?$"
)
_OPTION = re.compile(r"^[A-Za-z][A-Za-z0-9]*=\S.*$")


@dataclass(frozen=True)
class HostSpec:
    """One host of an ssh plan: ``host`` (name or address), with its ``user`` and ``port``."""

    host: str
    user: str | None = None
    port: int | None = None
    label: str = ""  # as the caller wrote it: names the host in messages and CHEERFUL_HOST

    @classmethod
    def parse(cls, text: str, user: str | None = None, port: int | None = None) -> HostSpec:
        """Read ``host``, ``user@host``, ``host:port`` or ``user@[v6addr]:port``.

        ``user`` and ``port`` apply when the text gives none.
        """
        if not isinstance(text, str):
            raise ConfigError(f"a host must be a string such as 'user@host:22', not {text!r}")
        match = _SPEC.match(text.strip())
        host = match and (match["host"] or match["v6"])
        if not match or not host or host.startswith("-"):
            raise ConfigError(
                f"cannot read the host {text!r}: write 'host', 'user@host', 'host:port' or "
                "'user@[ipv6]:port' (names from ~/.ssh/config work too)"
            )
        given_port = int(match["port"]) if match["port"] else port
        if given_port is not None and not 0 < given_port < 65536:
            raise ConfigError(f"the port of host {text!r} must be between 1 and 65535")
        if (match["user"] or "").startswith("-"):
            raise ConfigError(f"the user of host {text!r} cannot start with '-'")
        return cls(host, match["user"] or user, given_port, text.strip())


@dataclass(frozen=True)
class SshSettings:
    """Hosts reached over SSH, ``workers_per_host`` worker processes each, and how to
    reach them; made (checked) by :func:`checked_settings`."""
    hosts: tuple[HostSpec, ...]
    key: str | None = None
    ssh_options: tuple[str, ...] = ()
    python: str = "python3"
    setup: tuple[str, ...] = ()
    workers_per_host: int = 1
    connect_timeout: float = 10
    dry_run: bool = False

    def ssh_argv(self, host: HostSpec, remote_command: str) -> list[str]:
        """The exact ``ssh`` command line that runs ``remote_command`` on ``host``."""
        argv = ["ssh"]
        given = {opt.split("=", 1)[0].lower() for opt in self.ssh_options}
        for option in self.ssh_options:
            argv += ["-o", option]
        defaults = (*_DEFAULT_OPTIONS, ("ConnectTimeout", _number(self.connect_timeout)))
        for name, value in defaults:
            if name.lower() not in given:
                argv += ["-o", f"{name}={value}"]
        if self.key:
            argv += ["-i", self.key, "-o", "IdentitiesOnly=yes"]
        if host.port:
            argv += ["-p", str(host.port)]
        if host.user:
            argv += ["-l", host.user]
        return [*argv, "-T", "--", host.host, remote_command]

    def alive(self) -> tuple[float, int]:
        """ssh's ``ServerAliveInterval`` and ``ServerAliveCountMax`` in force for this plan."""
        values = dict(_DEFAULT_OPTIONS)
        for option in self.ssh_options:
            name, _, value = option.partition("=")
            values[name] = value
        lowered = {k.lower(): v for k, v in values.items()}
        try:
            interval = float(lowered["serveraliveinterval"])
            count = int(lowered["serveralivecountmax"])
        except ValueError as exc:
            raise ConfigError(f"ServerAliveInterval/CountMax must be numbers: {exc}") from exc
        return (interval if interval > 0 else 5.0), max(1, count)

    def remote_command(self, tag: str, boot_size: int) -> str:
        """What ssh asks the host's shell to run: the one-line bootstrap under ``python``."""
        starter = f"import sys;exec(sys.stdin.buffer.read({boot_size}))"
        return " ".join(_shell_word(w) for w in [*shlex.split(self.python), "-c", starter, tag])

def _port(port: int | None) -> int | None:
    if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
        raise ConfigError(f"port must be a whole number between 1 and 65535, not {port!r}")
    return port


def _key(key: str | os.PathLike | None) -> str | None:
    if key is None:
        return None
    path = os.path.abspath(os.path.expanduser(os.fspath(key)))
    if not os.path.isfile(path):
        raise ConfigError(f"the key file {path} does not exist: pass the private key's path")
    return path


def _options(options: Sequence[str]) -> tuple[str, ...]:
    if isinstance(options, str):
        options = [options]
    for option in options:
        if not isinstance(option, str) or not _OPTION.match(option):
            raise ConfigError(
                f"ssh_options take ssh -o options written Name=value, e.g. 'ProxyJump=bastion', "
                f"not {option!r}"
            )
    return tuple(options)


def _python(python: str) -> str:
    if not isinstance(python, str) or not shlex.split(python):
        raise ConfigError(f"python must name the host's Python, e.g. 'python3', not {python!r}")
    return python


def _setup(commands: Sequence[str]) -> list[str]:
    for command in commands:
        if not isinstance(command, str) or not command.strip():
            raise ConfigError(f"setup takes shell commands as strings, not {command!r}")
    return list(commands)


def _positive(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be a positive whole number, not {value!r}")
    return value


def _timeout(value: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"connect_timeout must be a positive number of seconds, not {value!r}")
    return value


def _number(value: float) -> str:
    return str(max(1, round(value)))


def _shell_word(word: str) -> str:
    """``word`` quoted for the host's POSIX shell, keeping a leading ``~/`` expandable."""
    if word.startswith("~/"):
        return '"$HOME"/' + shlex.quote(word[2:])
    return shlex.quote(word)


def checked_settings(
    hosts: str | Sequence[str],
    *,
    user: str | None,
    key: str | os.PathLike | None,
    port: int | None,
    ssh_options: Sequence[str],
    python: str,
    setup: str | Sequence[str],
    workers_per_host: int,
    connect_timeout: float,
    dry_run: bool,
) -> SshSettings:
    """The arguments of ``cf.ssh()``, checked (each bad one raises a ConfigError)."""
    if isinstance(hosts, str):
        hosts = [hosts]
    specs = tuple(HostSpec.parse(h, user, _port(port)) for h in hosts)
    if not specs:
        raise ConfigError("cf.ssh() needs at least one host")
    labels = [(s.user, s.host, s.port) for s in specs]
    if len(set(labels)) != len(labels):
        raise ConfigError("a host appears twice in cf.ssh(): use workers_per_host= instead")
    return SshSettings(
        specs,
        _key(key),
        _options(ssh_options),
        _python(python),
        (setup,) if isinstance(setup, str) else tuple(_setup(setup)),
        _positive("workers_per_host", workers_per_host),
        _timeout(connect_timeout),
        bool(dry_run),
    )
