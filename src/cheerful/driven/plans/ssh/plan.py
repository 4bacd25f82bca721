"""The ssh plan: tasks run on machines reached with the system ``ssh`` client.

``cf.ssh(hosts)`` is a small frozen value like every plan; opening it starts one ``ssh``
process per host (so ``~/.ssh/config``, agents and jump hosts work), ships cheerful's own
code to the host if its cache lacks this version, and runs an agent there that owns
``workers_per_host`` local worker processes. The caller side is :mod:`.pool` (over
:mod:`.link`, one per host), the host side :mod:`.agent`.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from cheerful.errors import ConfigError
from cheerful.pool import Pool

from ..base import Plan
from .bundle import bundle
from .hosts import SshSettings, checked_settings

__all__ = ["SshPlan", "ssh"]


@dataclass(frozen=True)
class SshPlan(SshSettings, Plan):
    """Hosts reached over SSH, ``workers_per_host`` worker processes each. Made by :func:`ssh`."""

    def open(self, cores: int) -> Pool:
        if self.dry_run:
            raise ConfigError(
                "this ssh plan is a dry run (dry_run=True): it printed its commands and runs "
                "nothing; drop dry_run=True to connect"
            )
        from .pool import SshPool  # the pool's machinery loads when a plan is opened

        return SshPool(self)

    def capacity(self, cores: int) -> int:
        return len(self.hosts) * self.workers_per_host

    def describe(self) -> str:
        """The dry-run text: every ssh command line and setup command, exactly."""
        code = bundle()
        command = self.remote_command(code.tag, len(code.boot))
        lines = ["cf.ssh dry run: nothing is connected. Opening this plan would run, per host:"]
        for host in self.hosts:
            count = self.workers_per_host
            lines.append(f"  # {host.label}: {count} worker{'s' if count > 1 else ''}")
            lines.append("  " + shlex.join(self.ssh_argv(host, command)))
        lines.append(
            f"then send the {len(code.boot)}-byte bootstrap (cheerful/driven/plans/ssh/boot.py) on its "
            f"standard input; unless ~/.cache/cheerful/code/{code.tag} exists there, ship "
            f"cheerful's code ({len(code.zip) // 1024} KiB zip) into it"
        )
        if self.setup:
            lines.append("and run once per host per session, with /bin/sh on the host:")
            lines += [f"  {command}" for command in self.setup]
        return "\n".join(lines)

    def __repr__(self) -> str:
        labels = [h.label for h in self.hosts]
        extra = f", workers_per_host={self.workers_per_host}" if self.workers_per_host > 1 else ""
        return f"ssh({labels!r}{extra})"


def ssh(
    hosts: str | Sequence[str],
    *,
    user: str | None = None,
    key: str | os.PathLike | None = None,
    port: int | None = None,
    ssh_options: Sequence[str] = (),
    python: str = "python3",
    setup: str | Sequence[str] = (),
    workers_per_host: int = 1,
    connect_timeout: float = 10,
    dry_run: bool = False,
) -> SshPlan:
    """A plan that runs tasks on ``hosts`` over SSH, ``workers_per_host`` processes each.

    ``hosts`` are names or addresses, each possibly ``user@host:port`` (names from
    ``~/.ssh/config`` work: the system ``ssh`` client is used, with its agent and jump
    hosts). ``user``, ``key`` (a private key file) and ``port`` apply to hosts that do not
    say otherwise; ``ssh_options`` are extra ``-o`` options such as ``"ProxyJump=bastion"``
    (they win over cheerful's defaults: ``BatchMode=yes``,
    ``StrictHostKeyChecking=accept-new``, ``ServerAliveInterval=5``,
    ``ServerAliveCountMax=3``). The host needs only ``python`` (3.10 or newer): cheerful
    ships its own code into ``~/.cache/cheerful`` there. ``setup`` commands (e.g.
    ``"pip install --user scikit-learn"``) run once per host per session. With
    ``dry_run=True`` the plan prints the exact commands it would run and connects to nothing.

    Nest it with a local plan to use every core of each host::

        with cf.plan(cf.ssh(["10.0.0.5", "10.0.0.6"]), cf.processes()):
            cf.map(fit_fold, range(10))   # a cf.map inside fit_fold runs on that host's cores
    """
    settings = checked_settings(
        hosts,
        user=user,
        key=key,
        port=port,
        ssh_options=ssh_options,
        python=python,
        setup=setup,
        workers_per_host=workers_per_host,
        connect_timeout=connect_timeout,
        dry_run=dry_run,
    )
    plan = SshPlan(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)})
    if dry_run:
        print(plan.describe(), flush=True)
    return plan
