"""The Batch API's records in the store: a file's lines in order, ownership by team, one lease
holder at a time, settling that releases the hold, fresh cache keys looked up in chunks, and
ledger rows written in bulk once each."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time

import pytest

from gateway.accounting.periods import Periods
from gateway.store import Store
from gateway.store.base import CacheEntry
from gateway.store.batch_sql import KEYS_AT_ONCE, _param_name
from gateway.store.records import BatchFile, BatchLine, BatchRecord
from tests.factories import reserve, team_and_key
from tests.test_store_accounting import row


def a_file(team_id: int, file_id: str = "file-1", created_at: int = 100) -> BatchFile:
    return BatchFile(file_id, team_id, "key_1", "batch", "in.jsonl", 10, created_at,
                     "/v1/images/generations", 2, 300)  # fmt: skip


def a_batch(
    team_id: int, batch_id: str = "batch_gw_1", reservation: int | None = None
) -> BatchRecord:
    return BatchRecord(
        id=batch_id, upstream_id="batch_up", team_id=team_id, key_id="key_1",
        input_file_id="file-1", endpoint="/v1/images/generations", created_at=100, lines=2,
        cached_lines=0, cached_file_id=None, cache_write=True, held_nanos=300,
        reservation_id=reservation, metadata=None, status="in_progress", upstream=None,
    )  # fmt: skip


async def test_a_file_and_its_lines_belong_to_its_team(store: Store) -> None:
    team_id, _ = await team_and_key(store)
    other = await store.create_team("other")
    lines = [BatchLine("file-1", n, f"c{n}", "gpt-image-1", None, "low", None, 150) for n in (2, 1)]
    await store.add_file(a_file(team_id), lines)

    assert [line.line for line in await store.file_lines("file-1")] == [1, 2]
    assert await store.get_file("file-1", team_id) == a_file(team_id)
    assert await store.get_file("file-1", other.id) is None
    assert await store.list_files(other.id, None, 10, None) == []
    assert not await store.delete_file("file-1", other.id, 1)
    assert await store.delete_file("file-1", team_id, 1)
    assert await store.get_file("file-1", team_id) is None


async def test_files_and_batches_list_newest_first_and_page_on(store: Store) -> None:
    team_id, _ = await team_and_key(store)
    for n in range(3):
        await store.add_file(a_file(team_id, f"file-{n}", created_at=100 + n), [])
        await store.add_batch(dataclasses.replace(a_batch(team_id, f"b{n}"), created_at=100 + n))
    assert [f.id for f in await store.list_files(team_id, "batch", 2, None)] == ["file-2", "file-1"]
    assert [f.id for f in await store.list_files(team_id, None, 5, "file-1")] == ["file-0"]
    assert [b.id for b in await store.list_batches(team_id, 5, "b2")] == ["b1", "b0"]
    assert [b.id for b in await store.list_batches(None, 1)] == ["b2"]


async def test_one_process_leases_a_batch_until_its_lease_runs_out(store: Store) -> None:
    team_id, _ = await team_and_key(store)
    await store.add_batch(a_batch(team_id))
    now = time.time()
    assert await store.lease_batch("batch_gw_1", "a", now, 60)
    assert await store.lease_batch("batch_gw_1", "a", now, 60)  # its own again
    assert not await store.lease_batch("batch_gw_1", "b", now + 30, 60)
    assert await store.lease_batch("batch_gw_1", "b", now + 61, 60)  # a's ran out


async def test_finishing_releases_the_hold_and_no_one_leases_it_again(store: Store) -> None:
    team_id, key_id = await team_and_key(store)
    hold = await reserve(store, team_id, key_id, 300, "batch_gw_1", owner=None)
    await store.add_batch(a_batch(team_id, reservation=hold))
    await store.finish_batch("batch_gw_1", 200, status="completed", charged_nanos=120)

    batch = await store.get_batch("batch_gw_1", team_id)
    assert batch is not None and batch.settled_at == 200 and batch.charged_nanos == 120
    now = dt.datetime.now(dt.UTC)
    spend = await store.spend("team", str(team_id), Periods.at(now), now.timestamp())
    assert spend.reserved_nanos == 0
    assert not await store.lease_batch("batch_gw_1", "a", 0, 60)
    assert await store.get_batch("batch_gw_1", team_id + 1) is None
    with pytest.raises(TypeError):
        await store.update_batch("batch_gw_1", team_id=2)


async def test_bulk_rows_are_written_once_each(store: Store) -> None:
    team_id, _ = await team_and_key(store)
    rows = [row(None, 10, request_id=f"b/{n}", batch_id="b", custom_id=str(n)) for n in range(700)]
    await store.record_many(rows)
    await store.record_many(rows[:50])  # a second settlement: nothing twice
    found = await store._all("SELECT COUNT(*), SUM(cost_nanos) FROM ledger", {})  # type: ignore[attr-defined]
    assert tuple(found[0]) == (700, 7000)
    assert team_id


async def test_fresh_cache_keys_are_found_in_chunks(store: Store) -> None:
    team_id, _ = await team_and_key(store)
    now = time.time()
    entries = [
        CacheEntry(f"k{n}", "team:1", team_id, "key_1", "generations", "m", False, "s" * 64,
                   "application/json", {}, 1, 1, 0, now, now + (60 if n % 2 else -60), body=b"x")
        for n in range(KEYS_AT_ONCE + 10)
    ]  # fmt: skip
    for start in range(0, len(entries), 64):
        await store.cache.put_many(entries[start : start + 64])
    wanted = [e.key for e in entries] + ["absent"]
    assert await store.fresh_cache_keys(wanted, now) == {e.key for e in entries[1::2]}


def test_placeholder_names_are_letters_only() -> None:
    names = [_param_name(n) for n in range(700)]
    assert len(set(names)) == 700
    assert all(name.replace("_", "").isalpha() and name.islower() for name in names)
