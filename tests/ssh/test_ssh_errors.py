"""What a new user meets when something is wrong: each failure says what and what to do."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import cheerful as cf
from cheerful.driven.plans.ssh.hosts import HostSpec
from ssh_servers import agents, ssh_plan

OLD_PYTHON = Path("/root/.pyenv/versions/3.8.18/bin/python3.8")


def square(x):
    return x * x


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_host_names_the_host_and_quotes_ssh(ssh_keys):
    host = f"root@127.0.0.1:{closed_port()}"
    with pytest.raises(cf.HostUnreachable, match="Connection refused") as info:
        cf.map(square, range(3), plan=ssh_plan(ssh_keys, [host]))
    assert host in str(info.value) and "is sshd running" in str(info.value)


def test_one_unreachable_host_stops_the_start_and_leaves_nothing(ssh_keys, loopback_sshd):
    here = f"127.0.0.1 {loopback_sshd.port}"  # this test's sshd: tests beside it have theirs
    before = set(agents(here))
    bad = f"root@127.0.0.1:{closed_port()}"
    with pytest.raises(cf.HostUnreachable, match=bad.replace(".", r"\.")):
        cf.map(square, range(3), plan=ssh_plan(ssh_keys, [loopback_sshd.host, bad]))
    assert not set(agents(here)) - before


def test_wrong_key_says_permission_denied(ssh_keys, loopback_sshd):
    plan = ssh_plan(ssh_keys, [loopback_sshd.host], key=str(ssh_keys.stranger))
    with pytest.raises(cf.HostUnreachable, match=r"Permission denied \(publickey\)") as info:
        cf.map(square, range(3), plan=plan)
    assert "check user= and key=" in str(info.value)


def test_missing_python_says_how_to_fix_it(ssh_keys, loopback_sshd):
    plan = ssh_plan(ssh_keys, [loopback_sshd.host], python="/opt/no/python3")
    with pytest.raises(cf.ConfigError, match="'/opt/no/python3' was not found") as info:
        cf.map(square, range(3), plan=plan)
    assert "python='/path/to/python3'" in str(info.value)


@pytest.mark.skipif(
    not OLD_PYTHON.exists(), reason="no Python 3.8 on this machine to play an old host"
)
def test_old_python_is_refused_with_its_version(ssh_keys, loopback_sshd):
    plan = ssh_plan(ssh_keys, [loopback_sshd.host], python=str(OLD_PYTHON))
    with pytest.raises(cf.ConfigError, match=r"has Python 3\.8\.\d+ .* needs 3\.10 or newer"):
        cf.map(square, range(3), plan=plan)


def test_failing_setup_shows_its_output(ssh_keys, loopback_sshd):
    plan = ssh_plan(ssh_keys, [loopback_sshd.host], setup=["echo preparing; echo oops >&2; exit 3"])
    with pytest.raises(cf.ConfigError, match="failed on host .* exit code 3") as info:
        cf.map(square, range(3), plan=plan)
    assert "preparing" in str(info.value) and "oops" in str(info.value)


def test_executor_futures_fail_when_no_host_can_be_reached(ssh_keys):
    plan = ssh_plan(ssh_keys, [f"127.0.0.1:{closed_port()}"])
    with cf.Executor(plan) as ex:
        future = ex.submit(square, 3)
        assert isinstance(future.exception(timeout=30), cf.HostUnreachable)
        with pytest.raises(cf.BrokenPlan):
            ex.submit(square, 4)


@pytest.mark.parametrize(
    "spec", ["", "a b", "-oProxyCommand=x", "host:0", "host:99999", "user@", "[::1", "a@b@c"]
)
def test_bad_host_specs_are_refused(spec):
    with pytest.raises(cf.ConfigError, match="host"):
        cf.ssh([spec])


def test_host_specs_are_read():
    assert HostSpec.parse("ubuntu@10.0.0.5:2222") == HostSpec(
        "10.0.0.5", "ubuntu", 2222, "ubuntu@10.0.0.5:2222"
    )
    assert HostSpec.parse("[::1]:22", user="me") == HostSpec("::1", "me", 22, "[::1]:22")
    assert HostSpec.parse("gpu-box", port=2200).port == 2200
    assert cf.ssh("a", user="u").hosts[0].user == "u"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"hosts": []}, "at least one host"),
        ({"hosts": ["a", "a"]}, "workers_per_host"),
        ({"hosts": ["a"], "key": "/no/such/key"}, "does not exist"),
        ({"hosts": ["a"], "ssh_options": ["-J bastion"]}, "Name=value"),
        ({"hosts": ["a"], "workers_per_host": 0}, "positive"),
        ({"hosts": ["a"], "connect_timeout": 0}, "positive"),
        ({"hosts": ["a"], "python": ""}, "python"),
    ],
)
def test_bad_arguments_say_what_to_do(kwargs, words):
    with pytest.raises(cf.ConfigError, match=words):
        cf.ssh(**kwargs)


def test_dry_run_prints_the_commands_and_connects_to_nothing(ssh_keys, capsys):
    plan = cf.ssh(
        ["ubuntu@10.0.0.5", "no-such-host.invalid:2222"],
        key=ssh_keys.client,
        ssh_options=["ProxyJump=bastion"],
        setup=["pip install --user scikit-learn"],
        dry_run=True,
    )
    out = capsys.readouterr().out
    assert "nothing is connected" in out
    assert "ssh -o ProxyJump=bastion -o BatchMode=yes" in out
    assert "StrictHostKeyChecking=accept-new" in out and "-l ubuntu -T -- 10.0.0.5" in out
    assert f"-i {ssh_keys.client}" in out and "-p 2222" in out
    assert "pip install --user scikit-learn" in out
    with pytest.raises(cf.ConfigError, match="dry run"):
        cf.map(square, range(3), plan=plan)


def test_dry_run_command_lines_run_as_printed(ssh_keys, loopback_sshd, capsys):
    """The printed command line is the one cheerful runs: paste it and the host answers."""
    ssh_plan(ssh_keys, [loopback_sshd.host], dry_run=True)
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("  ssh "))
    from cheerful.driven.plans.ssh.bundle import bundle

    done = subprocess.run(
        line, shell=True, input=bundle().boot, capture_output=True, timeout=30
    )  # the bootstrap answers, then stops when standard input ends
    assert done.stdout.startswith(b"cheerful-boot "), done.stderr
    assert done.stdout.split()[2].decode() == ".".join(map(str, sys.version_info[:3]))
    assert os.path.isdir(ssh_keys.cache)
