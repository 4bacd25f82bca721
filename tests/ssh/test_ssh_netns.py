"""Several hosts, each in its own network namespace: nested topology and cut links.

Skipped unless root (network namespaces). Each host is a real sshd behind a veth pair; a
cut takes the link down mid-run, as a pulled cable or a dead machine would.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

import cheerful as cf
from ssh_servers import agents, remote_processes, ssh_plan, wait_until


def sleep_two(i):
    start = time.time()
    time.sleep(2)
    return i, os.environ["CHEERFUL_HOST"], os.getpid(), start, time.time()


def four_on_this_host(_):
    return cf.map(sleep_two, range(4), chunk_size=1)


def slow(i):
    time.sleep(0.2)
    return i, os.environ["CHEERFUL_HOST"]


def test_nested_topology_runs_8_tasks_at_once_on_2_hosts_by_4_workers(ssh_keys, two_hosts):
    hosts = [h.host for h in two_hosts]
    with cf.plan(ssh_plan(ssh_keys, hosts), cf.processes(4)):
        per_host = cf.map(four_on_this_host, range(2), chunk_size=1)
    tasks = [task for outer in per_host for task in outer]
    assert [task[0] for task in tasks] == [0, 1, 2, 3] * 2  # in order
    assert {task[1] for task in tasks[:4]} != {task[1] for task in tasks[4:]}
    assert {task[1] for task in tasks} == set(hosts)
    assert len({(host, pid) for _, host, pid, _, _ in tasks}) == 8  # 8 distinct workers
    assert max(t[3] for t in tasks) < min(t[4] for t in tasks)  # all 8 ran at the same time


def test_a_host_cut_off_mid_run_loses_nothing(ssh_keys, two_hosts):
    first, second = two_hosts
    plan = ssh_plan(ssh_keys, [first.host, second.host], workers_per_host=2)
    pairs = []
    for index, value in cf.imap(slow, range(40), plan=plan, chunk_size=2):
        pairs.append((index, value))
        if len(pairs) == 6:
            first.cut()
    assert sorted(index for index, _ in pairs) == list(range(40))  # each exactly once
    assert all(value == (index, value[1]) for index, value in pairs)
    late = [value[1] for _, value in pairs[-10:]]
    assert set(late) == {second.host}  # after the cut, only the other host answers
    # cut off, the host's agent notices the silence and ends with its workers
    assert wait_until(lambda: not remote_processes(first.address), 15)


def slow_marked(i, marks):
    Path(marks, f"{i}-{os.environ['CHEERFUL_HOST']}").touch()  # the hosts share this disk
    return slow(i)


def test_every_host_cut_off_raises_host_unreachable(ssh_keys, two_hosts, tmp_path):
    plan = ssh_plan(ssh_keys, [h.host for h in two_hosts])

    def cut_once_both_run_tasks() -> None:  # never while the plan is still starting
        if wait_until(lambda: {m.name.split("-", 1)[1] for m in tmp_path.iterdir()} == hosts):
            for host in two_hosts:
                host.cut()

    hosts = {h.host for h in two_hosts}
    cutter = threading.Thread(target=cut_once_both_run_tasks)
    cutter.start()
    try:
        with pytest.raises(cf.HostUnreachable, match="no host of the ssh plan is left") as info:
            cf.starmap(slow_marked, [(i, str(tmp_path)) for i in range(400)], plan=plan,
                       chunk_size=1)  # fmt: skip
    finally:
        cutter.join()
    message = str(info.value)
    assert all(h.host in message for h in two_hosts) and "ssh says" in message


def test_a_host_down_at_start_is_named(ssh_keys, two_hosts):
    first, second = two_hosts
    second.cut()
    # ssh's own words depend on the kernel's state for the cut link: no route, or a
    # connection attempt that times out (seen once in about ten runs)
    said = f"{second.host}.*(No route to host|timed out)"
    with pytest.raises(cf.HostUnreachable, match=said):
        cf.map(slow, range(2), plan=ssh_plan(ssh_keys, [first.host, second.host]))
    assert wait_until(lambda: not agents(first.address), 5)


def test_hosts_sharing_a_home_ship_the_code_at_once(ssh_keys, two_hosts):
    cache = two_hosts[0].sshd.cache / "cheerful" / "code"
    assert wait_until(lambda: not remote_processes("10.200."), 15)
    shutil.rmtree(cache, ignore_errors=True)  # no host has the code now
    pool = ssh_plan(ssh_keys, [h.host for h in two_hosts]).open(1)
    try:
        assert "cold" in {info["cache"] for info in pool.started.values()}
    finally:
        pool.close()
    assert len(os.listdir(cache)) == 1  # one entry, no temporary directory left behind
