"""The key scheme of the store (cheerful.durable.layout)."""

from __future__ import annotations

import pytest

from cheerful.durable import layout
from cheerful.durable.stores import validate_key
from cheerful.errors import ConfigError

JOB = "job-2024.01_a"


def test_the_documented_keys() -> None:
    assert layout.manifest(JOB) == f"jobs/{JOB}/manifest.json"
    assert layout.code(JOB) == f"jobs/{JOB}/code.pkl"
    assert layout.script(JOB) == f"jobs/{JOB}/script"
    s3, s7, s12 = layout.shard(3), layout.shard(7), layout.shard(12)
    assert layout.input(JOB, 3) == f"jobs/{JOB}/inputs/{s3}/00000003"
    assert layout.result(JOB, 12) == f"jobs/{JOB}/results/{s12}/00000012"
    assert layout.log(JOB, 7, 2) == f"jobs/{JOB}/logs/{s7}/00000007.002"
    assert layout.checkpoint(JOB, 7) == f"jobs/{JOB}/checkpoints/{s7}/00000007"
    assert layout.status(JOB, "host-1.4242") == f"jobs/{JOB}/status/host-1.4242.json"
    assert layout.node("i-0abc123") == "nodes/i-0abc123.json"


def test_prefixes_contain_their_keys() -> None:
    pairs = [
        (layout.jobs_prefix(), layout.manifest(JOB)),
        (layout.job_prefix(JOB), layout.code(JOB)),
        (layout.inputs_prefix(JOB), layout.input(JOB, 0)),
        (layout.results_prefix(JOB), layout.result(JOB, 0)),
        (layout.logs_prefix(JOB), layout.log(JOB, 0, 1)),
        (layout.checkpoints_prefix(JOB), layout.checkpoint(JOB, 0)),
        (layout.status_prefix(JOB), layout.status(JOB, "w")),
        (layout.nodes_prefix(), layout.node("n")),
    ]
    for prefix, key in pairs:
        assert not prefix.endswith("/")
        assert key.startswith(prefix + "/")


def test_every_key_is_a_valid_store_key() -> None:
    keys = [
        layout.manifest(JOB),
        layout.code(JOB),
        layout.script(JOB),
        layout.input(JOB, 0),
        layout.result(JOB, 99_999_999),
        layout.log(JOB, 1, 999),
        layout.checkpoint(JOB, 1),
        layout.status(JOB, "w"),
        layout.node("n"),
    ]
    assert all(validate_key(key) == key for key in keys)


@pytest.mark.parametrize("chunk", [0, 1, 9, 10, 999_999, 1_000_000, 99_999_999])
def test_result_key_round_trips(chunk: int) -> None:
    assert layout.chunk_of_result_key(layout.result(JOB, chunk)) == chunk
    assert layout.chunk_of_input_key(layout.input(JOB, chunk)) == chunk
    assert layout.task_of_checkpoint_key(layout.checkpoint(JOB, chunk)) == chunk


def test_log_key_round_trips() -> None:
    for task, attempt in [(0, 0), (1, 1), (123_456, 12), (99_999_999, 999)]:
        assert layout.task_attempt_of_log_key(layout.log(JOB, task, attempt)) == (task, attempt)


def test_id_round_trips() -> None:
    assert layout.worker_of_status_key(layout.status(JOB, "ip-10-0-0-5.7")) == "ip-10-0-0-5.7"
    assert layout.node_of_key(layout.node("ip-10-0-0-5.ec2.internal")) == "ip-10-0-0-5.ec2.internal"


def test_by_number_orders_keys_numerically_for_a_million_tasks() -> None:
    numbers = [0, 1, 2, 9, 10, 11, 99, 100, 101, 999_999, 1_000_000, 1_000_001, 12_345_678]
    keys = [layout.result(JOB, n) for n in reversed(numbers)]
    assert [layout.chunk_of_result_key(k) for k in layout.by_number(keys)] == numbers


def test_by_number_orders_log_keys_by_task_then_attempt() -> None:
    pairs = [(1, 1), (1, 2), (1, 10), (2, 1), (10, 1), (10, 100)]
    keys = layout.by_number(layout.log(JOB, t, a) for t, a in reversed(pairs))
    assert [layout.task_attempt_of_log_key(k) for k in keys] == pairs


def test_keys_of_a_big_job_spread_evenly_over_256_prefixes() -> None:
    counts: dict[str, int] = {}
    for chunk in range(100_000):
        prefix = layout.result(JOB, chunk).rsplit("/", 1)[0]
        counts[prefix] = counts.get(prefix, 0) + 1
    assert len(counts) == 256
    assert max(counts.values()) < 1.25 * 100_000 / 256  # no hot prefix
    # neighbours (a chunk-size-1 job written in order) land on different prefixes
    assert len({layout.shard(n) for n in range(1_000, 1_016)}) > 12


def test_a_key_under_the_wrong_shard_is_refused() -> None:
    key = layout.result(JOB, 5)
    wrong = "00" if layout.shard(5) != "00" else "01"
    moved = key.replace(f"/{layout.shard(5)}/", f"/{wrong}/")
    with pytest.raises(ConfigError, match="wrong shard"):
        layout.chunk_of_result_key(moved)


def test_a_manifest_of_another_layout_says_which_cheerful_reads_it() -> None:
    current = {"v": layout.LAYOUT_VERSION, "tasks": 1}
    assert layout.readable_manifest(JOB, current) is current
    old = {"v": 1, "versions": {"cheerful": "0.1.0"}}
    with pytest.raises(ConfigError, match=r"layout v1 by cheerful 0\.1\.0.*submit it again"):
        layout.readable_manifest(JOB, old)


def test_job_ids_from_keys() -> None:
    keys = [
        layout.manifest("b"),
        layout.result("b", 1),
        layout.manifest("a"),
        layout.node("n"),
        "jobs",
        "elsewhere/jobs/c/manifest.json",
    ]
    assert layout.job_ids_from_keys(keys) == ["a", "b"]
    assert layout.job_ids_from_keys([]) == []


@pytest.mark.parametrize(
    "bad", ["", ".", "..", ".hidden", "-x", "_x", "a/b", "a b", "é", "a\n", "x" * 129, None, 7]
)
def test_bad_ids_are_refused(bad) -> None:
    for build in (layout.manifest, layout.job_prefix, lambda i: layout.result(i, 0)):
        with pytest.raises(ConfigError, match="not valid"):
            build(bad)
    with pytest.raises(ConfigError):
        layout.node(bad)
    with pytest.raises(ConfigError):
        layout.status(JOB, bad)


def test_validate_id_accepts_the_longest() -> None:
    assert layout.validate_id("x" * 128) == "x" * 128


@pytest.mark.parametrize("number", [-1, 100_000_000, 1.0, "1", True, None])
def test_bad_numbers_are_refused(number) -> None:
    for build in (layout.result, layout.input, layout.checkpoint):
        with pytest.raises(ConfigError):
            build(JOB, number)
    with pytest.raises(ConfigError):
        layout.log(JOB, number, 1)


@pytest.mark.parametrize("attempt", [-1, 1000, 1.5])
def test_bad_attempts_are_refused(attempt) -> None:
    with pytest.raises(ConfigError):
        layout.log(JOB, 1, attempt)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "jobs/j/results/1",
        "jobs/j/results/00000001",
        "jobs/j/results/2a/1",
        "jobs/j/results/2A/00000001",
        "jobs/j/results/000000001",
        "jobs/j/results/0000000a",
        "jobs/j/inputs/00000001",
        "jobs/../results/00000001",
        "prefix/jobs/j/results/00000001",
        "jobs/j/results/00000001/x",
        None,
    ],
)
def test_parsers_refuse_foreign_keys(key) -> None:
    with pytest.raises(ConfigError):
        layout.chunk_of_result_key(key)


def test_other_parsers_refuse_foreign_keys() -> None:
    result = layout.result(JOB, 1)
    for parse in (
        layout.chunk_of_input_key,
        layout.task_attempt_of_log_key,
        layout.task_of_checkpoint_key,
        layout.worker_of_status_key,
        layout.node_of_key,
    ):
        with pytest.raises(ConfigError):
            parse(result)
