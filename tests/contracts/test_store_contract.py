"""The store contract (cheerful.durable.stores.base), run against every store kind."""

from __future__ import annotations

import multiprocessing
import pickle
from collections.abc import Iterator

import pytest

from cheerful.durable.stores import Store
from cheerful.errors import ConfigError, ObjectNotFound, StoreError

BAD_KEYS = [
    "",
    "/abs",
    "a//b",
    "a/",
    "..",
    "a/../b",
    "./a",
    "a/.",
    ".hidden",
    "a/.tmp",
    "a\\b",
    "a\x00b",
    "a\nb",
    "x" * 1025,
    None,
    b"bytes",
]


# Values


def test_put_then_get(store: Store) -> None:
    store.put("a/b/c", b"\x00binary\xff")
    assert store.get("a/b/c") == b"\x00binary\xff"


def test_put_replaces(store: Store) -> None:
    store.put("k", b"one")
    store.put("k", b"two")
    assert store.get("k") == b"two"


def test_empty_and_bytes_like_values(store: Store) -> None:
    store.put("empty", b"")
    store.put("array", bytearray(b"ba"))
    store.put("view", memoryview(b"mv"))
    assert [store.get(k) for k in ("empty", "array", "view")] == [b"", b"ba", b"mv"]


def test_values_must_be_bytes(store: Store) -> None:
    with pytest.raises(ConfigError, match="serialize"):
        store.put("k", "text")
    with pytest.raises(ConfigError):
        store.put_if_absent("k", 42)


def test_get_absent_raises_object_not_found(store: Store) -> None:
    store.put("a/b", b"x")
    for key in ("nope", "a", "a/b/c"):
        with pytest.raises(ObjectNotFound) as info:
            store.get(key)
        assert isinstance(info.value, KeyError) and isinstance(info.value, StoreError)


def test_exists(store: Store) -> None:
    store.put("a/b", b"x")
    assert store.exists("a/b")
    assert not store.exists("a")  # a prefix is not a key
    assert not store.exists("a/c")


def test_put_if_absent_first_write_wins(store: Store) -> None:
    assert store.put_if_absent("r/1", b"first") is True
    assert store.put_if_absent("r/1", b"second") is False
    assert store.get("r/1") == b"first"


def test_delete(store: Store) -> None:
    store.put("a/b", b"x")
    store.delete("a/b")
    assert not store.exists("a/b")
    store.delete("a/b")  # absent: a no-op
    store.delete("never/was")
    assert list(store.list()) == []


def test_a_pickled_store_is_the_same_store(store: Store) -> None:
    store.put("k", b"v")
    with pickle.loads(pickle.dumps(store)) as copy:
        assert copy.get("k") == b"v"


# Listing


LISTED = ["a-x", "a/b-c/1", "a/b/c/d", "a/b/e", "a/bc/1", "ab", "z"]


@pytest.fixture
def filled(store: Store) -> Store:
    """A store holding the keys of LISTED, written out of order."""
    for key in reversed(LISTED):
        store.put(key, key.encode())
    return store


def test_list_everything_sorted(filled: Store) -> None:
    assert list(filled.list()) == sorted(LISTED) == LISTED
    assert list(filled.list("")) == LISTED


def test_list_is_an_iterator(filled: Store) -> None:
    listing = filled.list("a")
    assert isinstance(listing, Iterator)
    assert next(listing) == "a/b-c/1"


def test_list_prefix_is_directory_like(filled: Store) -> None:
    assert list(filled.list("a/b")) == ["a/b/c/d", "a/b/e"]
    assert list(filled.list("a/b/")) == ["a/b/c/d", "a/b/e"]
    assert list(filled.list("a")) == ["a/b-c/1", "a/b/c/d", "a/b/e", "a/bc/1"]


def test_list_a_prefix_that_is_a_key_or_absent(filled: Store) -> None:
    assert list(filled.list("z")) == ["z"]
    assert list(filled.list("a/b/e")) == ["a/b/e"]
    assert list(filled.list("nope")) == []
    assert list(filled.list("a/b/e/f")) == []


def test_list_order_is_numeric_for_padded_numbers(store: Store) -> None:
    keys = [f"jobs/j/results/{i:08d}" for i in (0, 1, 9, 10, 99, 100, 12345678)]
    for key in reversed(keys):
        store.put(key, b"")
    assert list(store.list("jobs/j/results")) == keys


def test_delete_prefix(filled: Store) -> None:
    assert filled.delete_prefix("a/b") == 2
    assert list(filled.list()) == ["a-x", "a/b-c/1", "a/bc/1", "ab", "z"]
    assert filled.delete_prefix("a") == 2
    assert filled.delete_prefix("a") == 0
    assert list(filled.list()) == ["a-x", "ab", "z"]


def test_delete_prefix_refuses_everything(filled: Store) -> None:
    for prefix in ("", "/"):
        with pytest.raises(ConfigError):
            filled.delete_prefix(prefix)
    assert list(filled.list()) == LISTED


def test_a_key_can_be_written_again_after_its_prefix_is_deleted(store: Store) -> None:
    store.put("jobs/j/results/00000001", b"x")
    store.delete_prefix("jobs/j")
    store.put("jobs/j/results/00000001", b"y")
    assert store.get("jobs/j/results/00000001") == b"y"


# Keys


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
def test_bad_keys_are_refused(store: Store, key) -> None:
    for call in (
        lambda: store.put(key, b"x"),
        lambda: store.put_if_absent(key, b"x"),
        lambda: store.get(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
    ):
        with pytest.raises(ConfigError):
            call()


@pytest.mark.parametrize("prefix", ["/a", "a//b", "..", "a/../b", ".tmp"])
def test_bad_prefixes_are_refused(store: Store, prefix: str) -> None:
    with pytest.raises(ConfigError):
        list(store.list(prefix))
    with pytest.raises(ConfigError):
        store.delete_prefix(prefix)


def test_unusual_but_valid_keys(store: Store) -> None:
    keys = ["a b", "a..b", "a.", "ünï/çødé", "x" * 200, "a=1,b=2", "k~!@#$%^&()"]
    for key in keys:
        store.put(key, key.encode())
    assert all(store.get(key) == key.encode() for key in keys)
    assert list(store.list()) == sorted(keys)


# Many processes at once


def test_put_if_absent_race_has_exactly_one_winner(store: Store) -> None:
    procs, keys = 6, [f"race/{i}" for i in range(30)]
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(procs), context.Queue()
    racers = [
        context.Process(target=_race, args=(store, keys, w, barrier, results)) for w in range(procs)
    ]
    for racer in racers:
        racer.start()
    wins = [results.get(timeout=60) for _ in range(procs)]
    for racer in racers:
        racer.join(60)
    assert [r.exitcode for r in racers] == [0] * procs
    for key in keys:
        winners = [w for w, won in wins if key in won]
        assert len(winners) == 1, key
        assert store.get(key) == _value(winners[0])


def _race(store: Store, keys: list[str], worker: int, barrier, results) -> None:
    won = set()
    for key in keys:
        barrier.wait(30)  # all racers start each key together
        if store.put_if_absent(key, _value(worker)):
            won.add(key)
    results.put((worker, won))


def _value(worker: int) -> bytes:
    return f"worker {worker} ".encode() * 5000


def test_readers_never_see_a_partial_value(store: Store) -> None:
    size, rounds = 512 * 1024, 150
    store.put("big", bytes([0]) * size)
    context = multiprocessing.get_context("fork")
    writer = context.Process(target=_write_rounds, args=(store, size, rounds))
    writer.start()
    reads = 0
    while writer.is_alive() or reads == 0:
        data = store.get("big")
        assert len(data) == size and data.count(data[:1]) == size
        listed = list(store.list())
        assert listed in (["big"], ["big", "fresh"])
        if "fresh" in listed:
            _check_uniform_or_gone(store, "fresh", size)
        reads += 1
    writer.join(60)
    assert writer.exitcode == 0
    assert store.get("big") == bytes([rounds % 256]) * size


def _write_rounds(store: Store, size: int, rounds: int) -> None:
    for i in range(1, rounds + 1):
        store.put("big", bytes([i % 256]) * size)
        if i % 10 == 0:
            store.put_if_absent("fresh", bytes([i % 256]) * size)
            store.delete("fresh")


def _check_uniform_or_gone(store: Store, key: str, size: int) -> None:
    try:
        data = store.get(key)
    except ObjectNotFound:
        return
    assert len(data) == size and data.count(data[:1]) == size


def test_children_lists_one_level(store: Store) -> None:
    for key in ("jobs/a/manifest.json", "jobs/a/results/1", "jobs/b/x", "jobs/c", "nodes/n"):
        store.put(key, b"x")
    assert store.children("jobs") == ["a", "b", "c"]
    assert store.children("jobs/a/") == ["manifest.json", "results"]
    assert store.children() == ["jobs", "nodes"]
    assert store.children("nothing") == []
    assert store.children("jobs/c") == []  # a key has no children
