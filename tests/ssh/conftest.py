"""Fixtures of the ssh plan's tests: a real sshd on loopback, and two hosts in network
namespaces (root only) that a test can cut off."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cheerful.driven.scheduler import release_pools
from ssh_servers import (  # noqa: F401 - fixtures
    Keys,
    Netns,
    add_safety_route,
    agents,
    descendants,
    kill_all,
    loopback_sshd,
    netns_available,
    remove_safety_route,
    ssh_keys,
    subnet_base,
    wait_until,
)


@pytest.fixture(autouse=True)
def _close_pools_after_each_test() -> Iterator[None]:
    """Every test starts with no kept pool (a pool may have lost a host)."""
    yield
    release_pools()


@pytest.fixture(scope="session")
def netns_hosts(ssh_keys: Keys, tmp_path_factory) -> Iterator[list[Netns]]:  # noqa: F811
    """Two hosts, each its own network namespace with sshd, sharing one cache directory."""
    if reason := netns_available():
        pytest.skip(reason)
    cache = tmp_path_factory.mktemp("netns-cache")
    added = add_safety_route()
    hosts: list[Netns] = []
    try:
        for n in range(2):
            hosts.append(Netns(ssh_keys, subnet_base() + n, cache=cache))
        yield hosts
    finally:
        release_pools()
        for host in hosts:
            host.remove()
        if added:
            remove_safety_route()


@pytest.fixture
def two_hosts(netns_hosts: list[Netns]) -> Iterator[list[Netns]]:
    """The two namespaced hosts, with their links up again after the test and no agent
    left on them (one cut off would linger until its silence timeout, or for ever if the
    test failed before it could end)."""
    try:
        yield netns_hosts
    finally:
        release_pools()
        for host in netns_hosts:
            host.restore()
            kill_all([p for agent in agents(host.address) for p in [agent, *descendants(agent)]])
