"""BatchStore: stores handed over one by one are stored in batches, each ends (stored or not),
and closing stores what is queued."""

from __future__ import annotations

import asyncio

import pytest

from gateway.cache import batch
from gateway.cache.batch import BatchStore, PendingStore
from gateway.cache.files import Written
from gateway.store.base import CacheEntry


def pending(i: int, heard: dict[int, CacheEntry | None]) -> PendingStore:
    def entry(written: Written) -> CacheEntry:
        raise AssertionError("the fake batch store makes no entries")

    def done(stored: CacheEntry | None) -> None:
        heard[i] = stored

    return PendingStore(f"body {i}".encode(), entry, done)


async def test_stores_close_together_go_in_one_batch_and_each_ends() -> None:
    batches: list[int] = []
    heard: dict[int, CacheEntry | None] = {}

    async def store_batch(items: list[PendingStore]) -> None:
        batches.append(len(items))
        for item in items:
            item.done(None)

    store = BatchStore(store_batch)
    for i in range(10):
        store.submit(pending(i, heard))
    assert not store.idle
    await store.drain()
    assert batches == [10] and sorted(heard) == list(range(10)) and store.idle


async def test_a_full_batch_goes_at_once_and_close_stores_what_is_queued(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batch, "BATCH_DELAY_S", 30.0)  # only a full batch goes before this
    batches: list[int] = []
    stored = asyncio.Event()

    async def store_batch(items: list[PendingStore]) -> None:
        batches.append(len(items))
        stored.set()
        for item in items:
            item.done(None)

    store = BatchStore(store_batch)
    heard: dict[int, CacheEntry | None] = {}
    for i in range(batch.MAX_BATCH + 3):
        store.submit(pending(i, heard))
    await asyncio.wait_for(stored.wait(), 5)  # long before the delay is over
    assert batches[0] == batch.MAX_BATCH  # what was queued beyond it follows at once
    await store.drain()
    assert sum(batches) == batch.MAX_BATCH + 3 and len(heard) == batch.MAX_BATCH + 3


async def test_a_batch_that_fails_still_ends_every_store() -> None:
    heard: dict[int, CacheEntry | None] = {}

    async def broken(items: list[PendingStore]) -> None:
        raise OSError("disk full")

    store = BatchStore(broken)
    for i in range(3):
        store.submit(pending(i, heard))
    await store.drain()
    assert heard == {0: None, 1: None, 2: None}


async def test_a_batch_being_stored_by_a_drain_is_not_idle_and_a_second_drain_waits_for_it() -> (
    None
):
    """Housekeeping drains too, storing what is queued itself: while that batch is being stored
    the store is not idle (though the background task has found nothing left and ended), and a
    drain of its own (a test's, shutdown's) returns only once that batch is in."""
    release = asyncio.Event()
    heard: dict[int, CacheEntry | None] = {}

    async def slow_store_batch(items: list[PendingStore]) -> None:
        await release.wait()
        for item in items:
            item.done(None)

    store = BatchStore(slow_store_batch)
    store.submit(pending(1, heard))
    # What a drain does after waiting for the task: store what is queued itself.
    housekeeping = asyncio.create_task(store._flush())
    await asyncio.sleep(batch.BATCH_DELAY_S * 3)  # the task wakes and finds the queue empty
    assert not store.idle  # a batch is being stored all the same
    second = asyncio.create_task(store.drain())
    await asyncio.sleep(0.05)
    assert not second.done() and heard == {}
    release.set()
    await asyncio.gather(housekeeping, second)
    assert heard == {1: None} and store.idle
