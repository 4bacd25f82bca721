"""cf.plan(outer, inner): a cf.map inside a task runs on the next level, without
oversubscribing the cores its outer worker owns."""

from __future__ import annotations

import os

import cheerful as cf

CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def inner_report(_):
    """What a task of the outer level sees of the inner level."""
    pids = cf.map(lambda _: os.getpid(), range(20), chunk_size=1)
    return os.getpid(), os.environ.get("CHEERFUL_CORES"), set(pids)


def nested_squares(n):
    return cf.map(lambda x: x * x, range(n))


def test_nested_results_are_correct():
    with cf.plan(cf.processes(2), cf.processes()):
        got = cf.map(nested_squares, [0, 1, 5, 10], chunk_size=1)
    assert got == [[x * x for x in range(n)] for n in [0, 1, 5, 10]]


def test_inner_processes_get_the_cores_their_outer_worker_owns():
    owned = max(1, CORES // 2)
    with cf.plan(cf.processes(2), cf.processes()):
        reports = cf.map(inner_report, range(4), chunk_size=1)
    for outer_pid, cores, inner_pids in reports:
        assert cores == str(owned)
        assert 1 <= len(inner_pids) <= owned
        assert outer_pid not in inner_pids


def test_a_single_outer_worker_hands_all_its_cores_to_the_inner_level():
    with cf.plan(cf.processes(1), cf.processes()):
        ((outer_pid, cores, inner_pids),) = cf.map(inner_report, [0])
    assert cores == str(CORES)
    assert 1 <= len(inner_pids) <= CORES and outer_pid not in inner_pids


def test_an_inner_sequential_level_runs_in_the_outer_worker():
    with cf.plan(cf.processes(2), cf.sequential()):
        reports = cf.map(inner_report, range(2), chunk_size=1)
    for outer_pid, _, inner_pids in reports:
        assert inner_pids == {outer_pid}


def test_below_the_last_level_maps_run_sequentially():
    with cf.plan(cf.processes(2)):
        reports = cf.map(inner_report, range(2), chunk_size=1)
    for outer_pid, _, inner_pids in reports:
        assert inner_pids == {outer_pid}


def test_three_levels():
    def middle(n):
        return sum(cf.map(nested_squares, [n, n + 1]), [])

    with cf.plan(cf.processes(2), cf.processes(1), cf.sequential()):
        got = cf.map(middle, [1, 2])
    assert got == [[0, 0, 1], [0, 1, 0, 1, 4]]


def test_a_sequential_outer_level_hands_inner_maps_to_processes():
    with cf.plan(cf.sequential(), cf.processes(2)):
        reports = cf.map(inner_report, range(2))
    for outer_pid, _, inner_pids in reports:
        assert outer_pid == os.getpid() and outer_pid not in inner_pids
    assert cf.plan().levels == (cf.processes(),)


def test_nested_seeds_match_across_outer_plans():
    def seeded_inner(i):
        return cf.map(lambda _: float(cf.task_rng().random()), range(3), seed=i)

    with cf.plan(cf.sequential(), cf.sequential()):
        reference = cf.map(seeded_inner, range(3))
    with cf.plan(cf.processes(2), cf.processes()):
        assert cf.map(seeded_inner, range(3)) == reference
