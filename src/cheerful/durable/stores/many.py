"""Reading many small objects of a store at once: :func:`get_many`.

Readers of a job (its records, the workers' counters, the nodes' heartbeats) get one object
per chunk, per worker or per node. On S3 each get is a round trip of tens of milliseconds,
so a thousand of them one after the other take most of a minute; a few threads keep
:data:`IN_FLIGHT` of them under way and the readers stay in O(objects / IN_FLIGHT) round
trips. A local store is read in order, in this thread (a file read is quicker than a
thread's hand-off).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from cheerful.errors import ObjectNotFound

from .base import Store

__all__ = ["IN_FLIGHT", "get_many", "list_many"]

IN_FLIGHT = 32
"""Gets under way at once on a remote store (boto3's default pool holds 10 connections per
client; the S3 store's client is made with room for these)."""


def get_many(store: Store, keys: Iterable[str]) -> Iterator[tuple[str, bytes | None]]:
    """``(key, data)`` for each of ``keys`` in order; ``data`` is None for a key that is not
    there (deleted since it was listed). Other errors of the store are raised."""
    if not store.remote:
        for key in keys:
            yield key, _get(store, key)
        return
    window: deque[tuple[str, Future[bytes | None]]] = deque()
    with ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="cheerful-get") as threads:
        try:
            for key in keys:
                window.append((key, threads.submit(_get, store, key)))
                if len(window) >= IN_FLIGHT:
                    done_key, future = window.popleft()
                    yield done_key, future.result()
            while window:
                done_key, future = window.popleft()
                yield done_key, future.result()
        finally:
            for _, future in window:  # the reader stopped early: the rest are not wanted
                future.cancel()


def _get(store: Store, key: str) -> bytes | None:
    try:
        return store.get(key)
    except ObjectNotFound:
        return None


def list_many(store: Store, prefixes: list[str]) -> Iterator[str]:
    """The keys under each of ``prefixes`` (in no particular order across prefixes): on a
    remote store :data:`IN_FLIGHT` listings at once, so a job's 256 result shards are
    listed in the time of a few pages instead of one page after the other."""
    if not store.remote:
        for prefix in prefixes:
            yield from store.list(prefix)
        return
    with ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="cheerful-list") as threads:
        for keys in threads.map(lambda prefix: list(store.list(prefix)), prefixes):
            yield from keys
