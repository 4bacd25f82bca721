"""The ssh plan on one loopback host: what the contract suite does not pin down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import cheerful as cf
from cheerful.driven.plans.ssh.bundle import bundle
from ssh_servers import (
    Sshd,
    agents,
    descendants,
    processes,
    remote_processes,
    ssh_plan,
    wait_until,
)


def where(_):
    time.sleep(0.1)  # long enough that one worker cannot take every chunk, even under load
    return os.environ.get("CHEERFUL_HOST"), os.getpid()


def risky(x):
    if x == 3:
        os._exit(7)
    return x


def slow(x):
    time.sleep(0.1)
    return x, os.environ["CHEERFUL_HOST"]


def shout(x):
    print(f"hello from task {x}", flush=True)
    return x


def test_tasks_know_their_host_and_workers_are_spread(ssh_keys, loopback_sshd):
    plan = ssh_plan(ssh_keys, [loopback_sshd.host], workers_per_host=2)
    got = cf.map(where, range(8), plan=plan, chunk_size=1)
    assert {host for host, _ in got} == {loopback_sshd.host}
    assert len({pid for _, pid in got}) == 2 and os.getpid() not in {pid for _, pid in got}


def test_a_task_that_kills_its_remote_worker_fails_alone(ssh_keys, loopback_sshd):
    plan = ssh_plan(ssh_keys, [loopback_sshd.host], workers_per_host=2)
    got = cf.map(risky, range(6), plan=plan, chunk_size=3, errors="return")
    assert got[:3] + got[4:] == [0, 1, 2, 4, 5]
    crash = got[3].exception
    assert isinstance(crash, cf.WorkerCrashed) and crash.exitcode == 7
    assert f"on host {loopback_sshd.host}" in str(crash)
    assert cf.map(risky, [1, 2], plan=plan) == [1, 2]  # the worker was replaced


def test_local_workers_forked_later_leave_the_hosts_alone(ssh_keys, loopback_sshd):
    """A fork inherits the pipes to ssh: the child must neither write to them nor close the
    hosts (it once sent them "quit" when it dropped its copy of the kept pools)."""
    plan = ssh_plan(ssh_keys, [loopback_sshd.host])
    assert cf.map(abs, [-1, -2], plan=plan) == [1, 2]
    assert cf.map(abs, [-3, -4], plan=cf.processes(2)) == [3, 4]  # forks while ssh is open
    assert cf.map(abs, [-5, -6], plan=plan) == [5, 6]


def test_a_host_that_dies_mid_run_loses_nothing(ssh_keys, loopback_sshd):
    other = Sshd(ssh_keys)
    try:
        plan = ssh_plan(ssh_keys, [loopback_sshd.host, other.host], workers_per_host=2)
        pairs = []
        for pair in cf.imap(slow, range(30), plan=plan, chunk_size=2):
            pairs.append(pair)
            if len(pairs) == 4:  # everything cheerful runs there dies at once
                (agent,) = agents(f"127.0.0.1 {other.port}")
                os.killpg(os.getpgid(agent), signal.SIGKILL)
        assert sorted(index for index, _ in pairs) == list(range(30))
        assert {host for _, (_, host) in pairs[-8:]} == {loopback_sshd.host}
    finally:
        other.stop()


def nap(seconds):
    time.sleep(seconds)
    return os.getpid()


def test_stopping_early_abandons_the_remote_chunks_and_the_pool_goes_on(ssh_keys, loopback_sshd):
    here = f"127.0.0.1 {loopback_sshd.port}"
    plan = ssh_plan(ssh_keys, [loopback_sshd.host], workers_per_host=2)
    chunks = cf.imap(nap, [0.0, 60], plan=plan, chunk_size=1)
    next(chunks)
    (agent,) = agents(here)
    workers = set(descendants(agent))  # its zygote and the workers it forked
    chunks.close()  # the 60 s nap is stopped on the host now, its worker replaced
    started = time.monotonic()
    assert cf.map(abs, [-1, -2], plan=plan) == [1, 2]
    assert time.monotonic() - started < 30
    assert agents(here) == [agent]  # same connection, same agent
    assert len(workers - set(descendants(agent))) == 1


def test_setup_runs_once_per_host_per_session(ssh_keys, loopback_sshd, tmp_path):
    marker = tmp_path / "setup-ran"
    setup = [f"echo ran >> {marker}"]
    for workers in (1, 2):  # two different plans, so two pools, on the same host
        plan = ssh_plan(ssh_keys, [loopback_sshd.host], setup=setup, workers_per_host=workers)
        assert cf.map(abs, [-1], plan=plan) == [1]
    assert marker.read_text() == "ran\n"


def test_what_tasks_print_comes_back_with_the_results_in_order(ssh_keys, loopback_sshd, capfd):
    plan = ssh_plan(ssh_keys, [loopback_sshd.host])
    cf.map(shout, range(2), plan=plan, chunk_size=1)
    assert "hello from task 0\nhello from task 1\n" in capfd.readouterr().out


def test_live_output_is_shown_with_the_host(ssh_keys, loopback_sshd, capfd, monkeypatch):
    from cheerful.driven.scheduler import release_pools

    monkeypatch.setenv("CHEERFUL_OUTPUT", "live")  # read when the host is connected
    plan = ssh_plan(ssh_keys, [loopback_sshd.host], workers_per_host=3)  # a pool of its own
    try:
        cf.map(shout, range(2), plan=plan)
        seen: list[str] = []  # the lines come through ssh's stderr, a moment after the results
        assert wait_until(lambda: seen.append(capfd.readouterr().err) or "task 1" in "".join(seen))
        assert f"[{loopback_sshd.host}] hello from task 0\n" in "".join(seen)
    finally:
        release_pools()  # the next test connects again, without live output


def test_shutdown_leaves_nothing_running_on_the_host(ssh_keys, loopback_sshd):
    here = f"127.0.0.1 {loopback_sshd.port}"
    plan = ssh_plan(ssh_keys, [loopback_sshd.host], workers_per_host=2)
    assert cf.map(where, range(4), plan=plan)
    assert len(agents(here)) == 1
    workers = descendants(agents(here)[0])
    assert len(workers) == 3  # the zygote that forks the workers, and the 2 workers
    assert len(_ssh_clients(loopback_sshd.port)) == 1  # one connection to the host
    from cheerful.driven.scheduler import release_pools

    release_pools()
    assert wait_until(lambda: not remote_processes(here), 10)
    assert not any(_alive(p) for p in workers)
    assert not _ssh_clients(loopback_sshd.port)


def test_a_caller_killed_mid_run_leaves_nothing_on_the_host(ssh_keys, loopback_sshd, tmp_path):
    here = f"127.0.0.1 {loopback_sshd.port}"
    script = tmp_path / "caller.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, time
            sys.path.insert(0, {str(Path(__file__).parents[1])!r})
            import cheerful as cf
            from ssh_servers import Keys, ssh_plan
            plan = ssh_plan(Keys(__import__("pathlib").Path({str(ssh_keys.root)!r})),
                            [{loopback_sshd.host!r}], workers_per_host=2)
            print("started", flush=True)
            cf.map(time.sleep, [60] * 4, plan=plan)
            """
        )
    )
    before = set(agents(here))
    caller = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE)
    try:
        assert caller.stdout.readline() == b"started\n"
        assert wait_until(lambda: len(set(agents(here)) - before) == 1, 15)
        (agent,) = set(agents(here)) - before
        workers = descendants(agent)  # its zygote and workers
        caller.send_signal(signal.SIGKILL)
    finally:
        caller.kill()
        caller.wait()
    assert wait_until(lambda: not _alive(agent) and not any(map(_alive, workers)), 15)
    assert not set(remote_processes(here)) - before
    assert not _ssh_clients(loopback_sshd.port)


def test_code_is_shipped_once_then_found_warm(ssh_keys, tmp_path):
    cache = tmp_path / "cache"
    server = Sshd(ssh_keys, cache=cache)
    try:
        plan = ssh_plan(ssh_keys, [server.host])
        first = plan.open(1)
        second = ssh_plan(ssh_keys, [server.host], workers_per_host=2).open(1)
        try:
            assert first.started[server.host]["cache"] == "cold"
            assert second.started[server.host]["cache"] == "warm"
        finally:
            first.close()
            second.close()
        entries = os.listdir(cache / "cheerful" / "code")
        assert entries == [bundle().tag]
    finally:
        server.stop()


def test_two_bootstraps_racing_to_ship_leave_one_complete_copy(tmp_path):
    """Hosts sharing a home directory ship at once: a rename settles it, no half copies."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    code = bundle()
    command = cf.ssh("h", python=sys.executable).remote_command(code.tag, len(code.boot))
    boots = [
        subprocess.Popen(
            command, shell=True, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        for _ in range(2)
    ]
    for boot in boots:
        boot.stdin.write(code.boot)
        boot.stdin.flush()
    for boot in boots:  # both found the cache empty before either shipped
        assert boot.stdout.readline().split()[1] == b"cold"
    threads = [threading.Thread(target=_ship, args=(b, code.zip)) for b in boots]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    root = tmp_path / "cheerful" / "code"
    assert os.listdir(root) == [code.tag]
    assert (root / code.tag / "cheerful" / "driven" / "plans" / "ssh" / "agent.py").exists()


def _ship(boot: subprocess.Popen, data: bytes) -> None:
    boot.stdin.write(b"%016d" % len(data) + data)
    boot.stdin.close()  # the agent then finds no hello and stops
    boot.wait(30)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _ssh_clients(port: int) -> list[str]:
    ours = ["-p", str(port)]
    return [argv for _, argv in processes() if argv[0] == "ssh" and _contains(argv, ours)]


def _contains(argv: list[str], part: list[str]) -> bool:
    return any(argv[i : i + len(part)] == part for i in range(len(argv)))
