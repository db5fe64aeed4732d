"""The store's contract, run against both stores: SQLite (the embedded default) and a real
PostgreSQL server started for the tests. Each test states what a store must do, whatever its
engine: teams and keys, the atomic reservation (raced), settling by ledger row, spend, usage,
orphans, and the cache index's bookkeeping."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.accounting.periods import Periods
from gateway.store import Conflict, Store, open_store
from gateway.store.base import USAGE_COLUMNS, CacheEntry, LedgerRow, UsageFilter
from gateway.store.migrations import MIGRATIONS_DIR, all_migrations
from gateway.store.postgres import POSTGRES_MIGRATIONS
from gateway.store.sql import usage_query
from tests.factories import USD, reserve, team_and_key

# Starts the servers it tests itself (or needs no fixture's database): run once, not again on
# PostgreSQL.
pytestmark = pytest.mark.one_pass


@pytest.fixture(params=["sqlite", "postgres"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'g.db'}"
    url: str = await request.getfixturevalue("postgres_server").new_database()
    return url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    store = open_store(store_url)
    await store.connect()
    await store.migrate()
    yield store
    await store.close()


def ledger_row(request_id: str, team_id: int, key_id: str, cost: int, **more: Any) -> LedgerRow:
    periods = Periods.at(dt.datetime.now(dt.UTC))
    values: dict[str, Any] = dict(
        request_id=request_id,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        day=periods.day, week=periods.week, month=periods.month,
        key_id=key_id, team_id=team_id, endpoint="generations", model="gpt-image-1",
        size="1024x1024", quality="low", n=1, stream=False, status=200, outcome="ok",
        cache_status="miss", text_input_tokens=3, cached_text_input_tokens=0,
        image_input_tokens=0, cached_image_input_tokens=0, image_output_tokens=272,
        text_output_tokens=0, images=1, estimate_nanos=cost, cost_nanos=cost, saved_nanos=0,
        latency_ms=12.5, upstream_request_id="req_1", price_version="v1", reservation_id=None,
    )  # fmt: skip
    values.update(more)
    return LedgerRow(**values)


async def test_replicas_starting_together_migrate_once(store_url: str) -> None:
    stores = [open_store(store_url) for _ in range(3)]
    for store in stores:
        await store.connect()
    try:
        applied = await asyncio.gather(*(store.migrate() for store in stores))
        directory = POSTGRES_MIGRATIONS if store_url.startswith("postgresql") else MIGRATIONS_DIR
        # Every migration applied once, by one of them; the others found it done.
        names = [name for done in applied for name in done]
        assert sorted(names) == [m.name for m in all_migrations(directory)]
        assert await stores[0].migrate() == []
    finally:
        for store in stores:
            await store.close()


async def test_teams_and_keys(store: Store) -> None:
    _, key_id = await team_and_key(store, budget_nanos=5 * USD, budget_period="month")
    with pytest.raises(Conflict):
        await store.create_team("design")
    found = await store.find_key_by_hash("h" * 64)
    assert found is not None and found[0].id == key_id and found[1].budget_nanos == 5 * USD
    updated = await store.update_team("design", rpm=7)
    assert updated is not None and updated.rpm == 7
    assert [t.name for t in await store.list_teams()] == ["design"]
    key = await store.update_key(key_id, name="renamed", rpm=3)
    assert key is not None and (key.name, key.rpm) == ("renamed", 3)
    rotated = await store.rotate_key(key_id, key_hash="n" * 64, prefix="sk-gw-new")
    assert rotated is not None and rotated.prefix == "sk-gw-new"
    assert await store.find_key_by_hash("h" * 64) is None
    assert (await store.delete_team("design")) == 1
    assert await store.get_team("design") is None
    revoked = await store.get_key(key_id)
    assert revoked is not None and revoked.revoked
    assert await store.get_team("nobody") is None and await store.delete_team("nobody") is None


async def test_fifty_racing_reservations_take_exactly_what_the_budget_holds(store: Store) -> None:
    team_id, key_id = await team_and_key(store, budget_nanos=5 * USD, budget_period="day")
    held = await asyncio.gather(
        *(reserve(store, team_id, key_id, USD, f"req_{i}") for i in range(50))
    )
    assert sum(r is not None for r in held) == 5
    spend = await store.spend("team", str(team_id), Periods.at(dt.datetime.now(dt.UTC)), 0.0)
    assert (spend.spent_nanos, spend.reserved_nanos) == (0, 5 * USD)


async def test_a_ledger_row_settles_its_hold_and_counts_once(store: Store) -> None:
    team_id, key_id = await team_and_key(store, budget_nanos=5 * USD, budget_period="day")
    reservation = await reserve(store, team_id, key_id, 2 * USD, "req_a")
    row = ledger_row("req_a", team_id, key_id, USD, reservation_id=reservation)
    await store.record(row)
    await store.record(row)  # again (a journal replay): nothing changes
    now = dt.datetime.now(dt.UTC)
    for scope, scope_id in (("team", str(team_id)), ("key", key_id)):
        spend = await store.spend(scope, scope_id, Periods.at(now), now.timestamp())
        assert (spend.spent_nanos, spend.reserved_nanos) == (USD, 0)
    # 4 left: a 4-dollar hold fits, then nothing more does.
    assert await reserve(store, team_id, key_id, 4 * USD, "req_b") is not None
    assert await reserve(store, team_id, key_id, 1, "req_c") is None
    usage = await store.usage(UsageFilter(team_id=team_id), "model")
    assert usage == [
        {
            "model": "gpt-image-1", "requests": 1, "refused": 0, "images": 1,
            "text_input_tokens": 3, "cached_text_input_tokens": 0, "image_input_tokens": 0,
            "cached_image_input_tokens": 0, "image_output_tokens": 272,
            "text_output_tokens": 0, "cost_nanos": USD, "saved_nanos": 0,
            "upstream_cost_nanos": USD,
        }
    ]  # fmt: skip


def _sums_by(rows: list[LedgerRow], group: str) -> dict[str, dict[str, int]]:
    """The usage report worked out here, row by row, as the store must give it."""
    sums: dict[str, dict[str, int]] = {}
    for row in rows:
        name = {"model": row.model or "(none)", "day": row.day}.get(group) or getattr(row, group)
        into = sums.setdefault(name, dict.fromkeys(USAGE_COLUMNS, 0))
        into["requests"] += 1
        into["refused"] += row.outcome.startswith("refused")
        for column in USAGE_COLUMNS[2:]:
            into[column] += getattr(row, column)
    return sums


async def test_usage_over_whole_days_equals_the_ledgers_sums(store: Store) -> None:
    """Whole-day reports read the daily summary; any other bound reads the ledger: both must
    give exactly the sums of the rows in range, whatever the mix of days, models (one none),
    outcomes and cache statuses."""
    team_id, key_id = await team_and_key(store)
    start = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
    rows = []
    for i in range(36):
        moment = start + dt.timedelta(hours=7 * i, minutes=i)
        periods = Periods.at(moment)
        rows.append(
            ledger_row(
                f"req_{i}", team_id, key_id, cost=(i % 5) * 1_000_003,
                created_at=moment.isoformat(timespec="milliseconds"),
                day=periods.day, week=periods.week, month=periods.month,
                model=(None, "gpt-image-1", "gpt-image-1-mini")[i % 3],
                outcome=("ok", "ok", "refused_budget", "upstream_error")[i % 4],
                cache_status=("miss", "hit", "bypass")[i // 2 % 3],
                saved_nanos=i * 7, image_output_tokens=i * 11, images=i % 3,
            )
        )  # fmt: skip
    for row in rows:
        await store.record(row)
    day = dt.timedelta(days=1)
    for since, until in (
        (None, None),
        (start + day, start + 3 * day),  # whole days: the summary
        (start + day + dt.timedelta(hours=5), start + 3 * day),  # mid-day: the ledger
    ):
        bounds = [
            None if t is None else t.isoformat(timespec="milliseconds") for t in (since, until)
        ]
        in_range = [
            r for r in rows
            if (bounds[0] is None or r.created_at >= bounds[0])
            and (bounds[1] is None or r.created_at < bounds[1])
        ]  # fmt: skip
        read = usage_query(UsageFilter(since=bounds[0], until=bounds[1]), "day")[0].split()
        assert read[read.index("FROM") + 1] == ("ledger" if since and since.hour else "usage_daily")
        for group in ("model", "day", "outcome", "cache_status"):
            store_group = "cache" if group == "cache_status" else group
            found = await store.usage(UsageFilter(since=bounds[0], until=bounds[1]), store_group)
            assert {r.pop(store_group): r for r in found} == _sums_by(in_range, group)


async def test_holds_of_a_dead_process_become_orphaned_rows(store: Store) -> None:
    team_id, key_id = await team_and_key(store, budget_nanos=5 * USD, budget_period="day")
    await reserve(store, team_id, key_id, 2 * USD, "req_x")
    assert await store.holders() == ["host:1"]
    assert await store.settle_orphans(0.0, dead_owners=["host:1"]) == 1
    assert await store.holders() == []
    usage = await store.usage(UsageFilter(), "team")
    assert usage[0]["requests"] == 1 and usage[0]["cost_nanos"] == 2 * USD
    assert await store.settle_orphans(0.0, dead_owners=["host:1"]) == 0


async def test_owners_of_holds_silent_since_a_time_are_found_by_their_heartbeats(
    store: Store,
) -> None:
    team_id, key_id = await team_and_key(store)
    for owner in ("a:1:x", "b:2:y", "c:3:z"):
        await reserve(store, team_id, key_id, USD, f"req_{owner}", owner=owner)
    await store.heartbeat("a:1:x", 1000.0)
    await store.heartbeat("b:2:y", 1000.0)
    await store.heartbeat("b:2:y", 1050.0)  # heard again
    await store.heartbeat("d:4:w", 900.0)  # silent, but holds nothing
    # c never sent one (an older version): never declared silent.
    assert await store.silent_holders(before=1040.0) == ["a:1:x"]
    assert await store.silent_holders(before=1060.0) == ["a:1:x", "b:2:y"]
    assert await store.silent_holders(before=999.0) == []
    # A day later the unheard-of are forgotten, whoever writes next.
    await store.heartbeat("b:2:y", 1000.0 + 86400 + 1)
    assert await store.silent_holders(before=10**7) == ["b:2:y"]


def cache_entry(key: str, sha: str, size: int, body: bytes | None = None) -> CacheEntry:
    return CacheEntry(
        key=key, scope="team:1", team_id=1, key_id="key_1", endpoint="generations",
        model="gpt-image-1", stream=False, body_sha256=sha, content_type="application/json",
        headers={"x-a": "b"}, size=size, images=1, cost_nanos=7, created_at=1.0,
        expires_at=4e9, body=body,
    )  # fmt: skip


async def test_the_cache_index_keeps_its_size_and_sweep_queue(store: Store) -> None:
    await team_and_key(store)
    index = store.cache
    used = await index.put_many(
        [cache_entry("a", "f" * 64, 100), cache_entry("b", "i" * 64, 3, body=b"abc")]
    )
    assert used == 103
    got = await index.get("b", 2.0)
    assert got is not None and got.body == b"abc" and got.headers == {"x-a": "b"}
    assert (await index.get("a", 2.0)).body is None  # type: ignore[union-attr]
    assert await index.get("a", 5e9) is None  # expired by then
    assert await index.bodies() == [("f" * 64, 100)]
    assert await index.inline_bodies() == [("i" * 64, b"abc")]
    await index.touch({"a": (3, 9.0)})
    stats = await index.stats()
    assert (stats.entries, stats.hits, stats.bodies, stats.bytes) == (2, 3, 2, 103)
    assert await index.evict_to(100) == 1  # "b" was hit least recently
    assert await index.used_bytes() == 100
    assert await index.purge(team_id=1, key_id=None) == 1
    assert await index.used_bytes() == 0
    assert await index.unused_bodies() == ["f" * 64]  # the file; the inline body had none
    assert await index.put(cache_entry("c", "f" * 64, 100)) == 100
    assert await index.delete_expired(5e9) == 1 and await index.unused_bodies() == ["f" * 64]


async def test_the_newest_fresh_entries_of_a_team_come_first_without_bodies(store: Store) -> None:
    await team_and_key(store)
    other = await store.create_team("research")
    entries = [
        replace(cache_entry("old", "a" * 64, 10), created_at=1.0),
        replace(cache_entry("new", "b" * 64, 3, body=b"abc"), created_at=3.0),
        replace(cache_entry("stale", "c" * 64, 10), created_at=4.0, expires_at=2.0),
        replace(cache_entry("theirs", "d" * 64, 10), created_at=2.0, team_id=other.id),
    ]
    await store.cache.put_many(entries)
    mine = await store.cache.recent(1, 10, now=2.5)
    assert [(e.key, e.body) for e in mine] == [("new", None), ("old", None)]
    everyone = await store.cache.recent(None, 2, now=2.5)
    assert [e.key for e in everyone] == ["new", "theirs"]


async def test_pooled_postgres_connections_keep_their_timeouts_after_long_work(
    postgres_server: Any,
) -> None:
    """Connections go back to the pool without a reset round trip; the long work of `unbounded`
    (migrations, db copy) puts the timeouts back itself, so the next user is bounded again."""
    from gateway.store.postgres import PostgresStore

    store = PostgresStore(await postgres_server.new_database(), pool_size=1, timeout_s=2.5)
    await store.connect()
    try:
        async with store.pool.unbounded() as conn:
            assert await conn.fetchval("SHOW statement_timeout") == "0"
        assert await store.pool.fetchval("SHOW statement_timeout") == "2500ms"
        assert await store.pool.fetchval("SHOW lock_timeout") == "2500ms"
        with pytest.raises(asyncpg.QueryCanceledError):  # bounded again, on the same connection
            await store.pool.fetchval("SELECT pg_sleep(4)")
    finally:
        await store.close()


async def test_a_miss_is_held_with_its_lookup_and_a_hit_holds_nothing(store: Store) -> None:
    from gateway.store.base import Hold

    team_id, key_id = await team_and_key(store, budget_nanos=10 * USD)
    now = dt.datetime.now(dt.UTC)

    def hold(amount: int, request_id: str) -> Hold:
        return Hold(key_id, team_id, amount, Periods.at(now), now.timestamp(), 60.0, request_id)

    entry, held = await store.lookup_or_reserve("k1", now.timestamp(), hold(3 * USD, "req_a"))
    assert entry is None and held is not None  # a miss: held
    entry, refused = await store.lookup_or_reserve("k1", now.timestamp(), hold(8 * USD, "req_b"))
    assert entry is None and refused is None  # 3 + 8 > 10: not held
    await store.cache.put_many([cache_entry("k1", "ab" * 32, 9, body=b'{"a": 1}')])
    entry, none = await store.lookup_or_reserve("k1", now.timestamp(), hold(1 * USD, "req_c"))
    assert entry is not None and entry.key == "k1" and none is None  # a hit: nothing held
    spend = await store.spend("team", str(team_id), Periods.at(now), now.timestamp())
    assert spend.reserved_nanos == 3 * USD
