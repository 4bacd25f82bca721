"""The ssh plan's figures, on real sshd hosts on this machine, medians of several runs.

    env -u PYTHONDONTWRITEBYTECODE python bench/ssh.py               # 5 runs each
    env -u PYTHONDONTWRITEBYTECODE python bench/ssh.py --repeat 3 --json out.json

As root the two hosts are network namespaces (each its own sshd behind a veth pair, as in
the tests); otherwise two sshd servers on 127.0.0.1. They share this machine's cores and
its ssh handshake cost (about 0.3 s here: the key exchange dominates opening a host).

  open cold    open the plan on 2 hosts with an empty code cache: the zip is built and
               shipped, each host unpacks it; then close
  open warm    the same with the cache filled (the usual case after the first run)
  1,000 tasks  cf.map(x + 1) over 1,000 items on a pool already open: ssh(2 hosts x 1
               worker) against processes(2); per task = wall / 1,000
  nested       8 tasks of time.sleep(2): cf.plan(cf.ssh([h1, h2]), cf.processes(4)), an
               outer map over the 2 hosts whose tasks each map 4 sleeps. "ssh open" has the
               hosts connected beforehand (as furrr's plan() does) and the inner pools start
               inside the clock; "from scratch" includes opening the hosts; "warm" is a
               second map in the same ``with cf.plan(...)`` block, every pool kept. The published furrr run of this experiment took 2.73 s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import cheerful as cf  # noqa: E402
import ssh_servers as servers  # noqa: E402 - the test helpers start the sshd servers
from cheerful.driven.plans.ssh.bundle import bundle  # noqa: E402
from cheerful.driven.scheduler import release_pools  # noqa: E402


def inc(x: int) -> int:
    return x + 1


def sleep_two(_) -> None:
    time.sleep(2)


def four_sleeps(_) -> list:
    return cf.map(sleep_two, range(4), chunk_size=1)


def start_hosts(root: Path) -> tuple[servers.Keys, list[str], Callable[[], None]]:
    """Two hosts (namespaces as root, else loopback servers) and how to stop them."""
    keys = servers.make_keys(root)
    if not servers.netns_available():
        added = servers.add_safety_route()
        spaces = [servers.Netns(keys, servers.subnet_base() + n) for n in range(2)]

        def stop() -> None:
            for space in spaces:
                space.remove()
            if added:
                servers.remove_safety_route()

        return keys, [s.host for s in spaces], stop
    daemons = [servers.Sshd(keys) for _ in range(2)]
    return keys, [d.host for d in daemons], lambda: [d.stop() for d in daemons]


def time_open(plan: cf.Plan, cache: Path | None) -> float:
    if cache is not None:
        shutil.rmtree(cache / "cheerful", ignore_errors=True)
        bundle.cache_clear()  # a first use in a new process builds the zip too
    started = time.perf_counter()
    pool = plan.open(1)
    elapsed = time.perf_counter() - started
    pool.close()
    return elapsed


def time_map(plan: cf.Plan, n: int = 1000) -> float:
    cf.map(inc, range(n), plan=plan)  # the pool is open and warm
    started = time.perf_counter()
    cf.map(inc, range(n), plan=plan)
    return time.perf_counter() - started


def time_nested(ssh: cf.Plan, mode: str) -> float:
    if mode == "warm":  # a second map in the same block: every pool is kept
        with cf.plan(ssh, cf.processes(4)):
            cf.map(four_sleeps, range(2), chunk_size=1)
            return _time_four_sleeps()
    release_pools()
    if mode == "ssh open":
        cf.map(abs, [1, 2], plan=ssh, chunk_size=1)  # connect the hosts, outside the clock
    with cf.plan(ssh, cf.processes(4)):
        return _time_four_sleeps()


def _time_four_sleeps() -> float:
    started = time.perf_counter()
    per_host = cf.map(four_sleeps, range(2), chunk_size=1)
    elapsed = time.perf_counter() - started
    assert [len(tasks) for tasks in per_host] == [4, 4]
    return elapsed


def measure(repeat: int) -> dict[str, list[float]]:
    root = Path(tempfile.mkdtemp(prefix="cheerful-bench-ssh-"))
    keys, hosts, stop = start_hosts(root)
    ssh = servers.ssh_plan(keys, hosts)
    runs: dict[str, list[float]] = {}
    try:
        for _ in range(repeat):
            runs.setdefault("open 2 hosts, cold", []).append(time_open(ssh, keys.cache))
            runs.setdefault("open 2 hosts, warm", []).append(time_open(ssh, None))
            runs.setdefault("1,000 tasks, ssh 2x1", []).append(time_map(ssh))
            runs.setdefault("1,000 tasks, processes(2)", []).append(time_map(cf.processes(2)))
        cf.map(abs, [1], plan=ssh)
        for mode in ("ssh open", "from scratch", "warm"):
            for _ in range(repeat):
                runs.setdefault(f"nested 8 x sleep(2), {mode}", []).append(time_nested(ssh, mode))
    finally:
        release_pools()
        stop()
        shutil.rmtree(root, ignore_errors=True)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (median shown)")
    parser.add_argument("--json", metavar="PATH", help="also write every run as JSON")
    args = parser.parse_args(argv)
    if reason := servers.sshd_available():
        print(f"cannot run: {reason}")
        return 1
    runs = measure(args.repeat)
    print(f"{'figure':<40} {'median':>9} {'min':>9} {'max':>9}")
    for name, values in runs.items():
        row = [statistics.median(values), min(values), max(values)]
        print(f"{name:<40} " + " ".join(f"{v:>8.3f}s" for v in row))
    for plan in ("ssh 2x1", "processes(2)"):
        per_task = statistics.median(runs[f"1,000 tasks, {plan}"]) / 1000 * 1e6
        print(f"per task, {plan}: {per_task:.1f} us")
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
