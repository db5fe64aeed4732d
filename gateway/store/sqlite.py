"""SQLite through aiosqlite: one connection (one writer, as SQLite wants), WAL, autocommit.

aiosqlite runs every statement on the connection's own thread, so the event loop never waits on
disk. Multi-statement changes use an explicit transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.accounting.periods import Periods
from gateway.store.base import (
    COPIED_TABLES,
    TOTALS_SQL,
    CacheEntry,
    Hold,
    LedgerRow,
    UsageFilter,
    orphan_row,
)
from gateway.store.batch_sql import BatchSql
from gateway.store.key_cache import Generation, KeyCache
from gateway.store.migrations import MIGRATIONS_DIR, pending_migrations
from gateway.store.response_sql import ResponseSql
from gateway.store.shared import SharedSql
from gateway.store.sql import (
    INSERT_TAG,
    LEDGER_COLUMNS,
    ORPHAN_COLUMNS,
    RESERVED,
    SPENT,
    now_text,
    tag_rows,
    usage_query,
    usage_rows,
)
from gateway.store.sqlite_cache import CACHE_GET, SqliteCacheIndex, cache_entry
from gateway.store.sqlite_trips import SharedTrips, Statement
from gateway.store.webhook_sql import WebhookSql

# One statement, so the check and the hold are one atomic step: SQLite runs one writer at a time,
# so no two requests can both see the same remaining budget.
_RESERVE = f"""
INSERT INTO reservations
    (key_id, team_id, amount_nanos, created_at, expires_at, request_id, owner, endpoint, model)
SELECT :key_id, :team_id, :amount, :created_at, :expires_at, :request_id, :owner, :endpoint, :model
FROM api_keys k JOIN teams t ON t.id = k.team_id
WHERE k.id = :key_id
  AND (k.budget_nanos IS NULL OR
       {SPENT.format(scope="key", scope_id=":key_id", table="k")}
       + {RESERVED.format(column="key_id", value=":key_id")} + :amount <= k.budget_nanos)
  AND (t.budget_nanos IS NULL OR
       {SPENT.format(scope="team", scope_id="CAST(:team_id AS TEXT)", table="t")}
       + {RESERVED.format(column="team_id", value=":team_id")} + :amount <= t.budget_nanos)
RETURNING id
"""
BULK_ROWS = 500  # rows written in one transaction by _many
# A request has one row: writing it again (a journal replay, an orphan settled twice) is a no-op;
# a row written settles its hold and grows the spend counters by trigger (migration 0004).
_RECORD = (
    f"INSERT INTO ledger ({', '.join(LEDGER_COLUMNS)})"
    f" VALUES ({', '.join(':' + c for c in LEDGER_COLUMNS)})"
    " ON CONFLICT (request_id) DO NOTHING"
)


def _reserve_params(hold: Hold) -> dict[str, Any]:
    return {
        "key_id": hold.key_id,
        "team_id": hold.team_id,
        "amount": hold.amount_nanos,
        "created_at": now_text(),
        "expires_at": hold.now + hold.ttl_s,
        "now": hold.now,
        "request_id": hold.request_id,
        "owner": hold.owner,
        "endpoint": hold.endpoint,
        "model": hold.model,
        **hold.periods.sql_case(),
    }


class SqliteStore(SharedSql, BatchSql, ResponseSql, WebhookSql):
    """The embedded default store. `path` may be `:memory:` for tests."""

    _duplicate = (aiosqlite.IntegrityError,)

    def __init__(
        self, path: str, migrations_dir: Path = MIGRATIONS_DIR, *, timeout_s: float = 5.0
    ) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self.migrations_dir = migrations_dir
        self._db: aiosqlite.Connection | None = None
        self._trips: SharedTrips | None = None
        self._checkpointer: aiosqlite.Connection | None = None
        self._bulk: aiosqlite.Connection | None = None
        self._cache = SqliteCacheIndex(self)
        self._keys = KeyCache(Generation(None))

    @property
    def keys(self) -> KeyCache:
        """The keys kept in memory (key_cache.py)."""
        return self._keys

    @property
    def cache(self) -> SqliteCacheIndex:
        return self._cache

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not connected")
        return self._db

    async def connect(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        self._trips = SharedTrips(self._db)
        if self.path != ":memory:":  # every process on this database shares the key generation
            generation = await asyncio.to_thread(Generation, Path(f"{self.path}-keys"))
            self._keys = KeyCache(generation)
        for pragma in (
            "PRAGMA journal_mode = WAL",
            "PRAGMA synchronous = NORMAL",
            "PRAGMA foreign_keys = ON",
            f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}",
            # Checkpoints copy the WAL into the database file and fsync: done on this (the only
            # serving) connection they stall every query behind them for milliseconds. A
            # second connection checkpoints instead (see checkpoint()); this limit, ~80 MB of
            # WAL, only bounds the log should that stop.
            "PRAGMA wal_autocheckpoint = 20000",
        ):
            await self._db.execute(pragma)

    async def close(self) -> None:
        self._keys.generation.close()
        for extra in (self._checkpointer, self._bulk):
            if extra is not None:
                await extra.close()
        self._checkpointer = self._bulk = None
        if self._db is not None:
            await self._db.close()
            self._db = self._trips = None

    async def checkpoint(self) -> None:
        """Copy the WAL into the database from a connection of its own (PASSIVE: it never waits
        for, nor blocks, the serving connection)."""
        if self.path == ":memory:":
            return
        if self._checkpointer is None:
            self._checkpointer = await aiosqlite.connect(self.path, isolation_level=None)
            await self._checkpointer.execute("PRAGMA busy_timeout = 1000")
        await self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    @property
    def trips(self) -> SharedTrips:
        if self._trips is None:
            raise RuntimeError("store is not connected")
        return self._trips

    async def _all(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[Any]:
        """Run `sql` and fetch every row, in a trip to the connection's thread shared with the
        statements of other requests (sqlite_trips.py)."""
        return await self.trips.run(sql, params)

    async def _all_in_one_trip(self, statements: list[Statement]) -> list[list[Any]]:
        """Several statements, one after the other, in one trip; each runs alone."""
        return await self.trips.run_all(statements)

    async def _one(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> Any:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    async def ping(self) -> None:
        await self._one("SELECT 1")

    async def _many(self, sql: str, rows: list[dict[str, Any]]) -> None:
        """`sql` for every row, BULK_ROWS to a transaction, on a connection of its own: its
        transactions catch nothing else (the serving connection waits for each, as SQLite has
        one writer, a few milliseconds at most)."""
        if not rows:
            return
        if self.path == ":memory:":  # one database per connection: the serving one it is
            await self.db.executemany(sql, rows)
            return
        if self._bulk is None:
            self._bulk = await aiosqlite.connect(self.path, isolation_level=None)
            await self._bulk.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
            await self._bulk.execute("PRAGMA foreign_keys = ON")
        for start in range(0, len(rows), BULK_ROWS):
            await self._bulk.execute("BEGIN IMMEDIATE")
            try:
                await self._bulk.executemany(sql, rows[start : start + BULK_ROWS])
                await self._bulk.execute("COMMIT")
            except BaseException:
                await self._bulk.execute("ROLLBACK")
                raise

    async def migrate(self) -> list[str]:
        await self.db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version TEXT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        applied = {row[0] for row in await self._all("SELECT version FROM schema_migrations")}
        done = []
        for migration in pending_migrations(self.migrations_dir, applied):
            # The version row first, then the file, as one transaction: a migration is applied
            # whole and recorded, or (rolled back on any error) not at all. Another process that
            # applied it meanwhile (they wait for each other's write lock) owns its version
            # row already, so this one finds it there and moves on.
            try:
                await self.db.executescript(
                    "BEGIN IMMEDIATE;\n"
                    "INSERT INTO schema_migrations (version, name, applied_at)"
                    f" VALUES ('{migration.version}', '{migration.name}', '{now_text()}');\n"
                    f"{migration.sql}\n;"
                    "COMMIT;"
                )
            except aiosqlite.IntegrityError as exc:
                if self.db.in_transaction:
                    await self.db.execute("ROLLBACK")
                if "schema_migrations.version" in str(exc):
                    continue
                raise
            except BaseException:
                if self.db.in_transaction:
                    await self.db.execute("ROLLBACK")
                raise
            done.append(migration.name)
        return done

    # Teams

    async def delete_team(self, name: str) -> int | None:
        team = await self.get_team(name)
        if team is None:
            return None
        now = now_text()
        revoked = await self._all(
            "UPDATE api_keys SET revoked_at = ? WHERE team_id = ? AND revoked_at IS NULL"
            " RETURNING id",
            (now, team.id),
        )
        await self._all(
            "UPDATE teams SET deleted_at = ?, name = name || '~deleted~' || id WHERE id = ?",
            (now, team.id),
        )
        self._keys.changed()
        return len(revoked)

    # Keys, spend, heartbeats, console sessions: shared.py

    # Accounting

    async def reserve(
        self,
        *,
        key_id: str,
        team_id: int,
        amount_nanos: int,
        periods: Periods,
        now: float,
        ttl_s: float,
        request_id: str | None = None,
        owner: str | None = None,
        endpoint: str | None = None,
        model: str | None = None,
    ) -> int | None:
        hold = Hold(key_id, team_id, amount_nanos, periods, now, ttl_s, request_id, owner,
                    endpoint, model)  # fmt: skip
        row = await self._one(_RESERVE, _reserve_params(hold))
        return None if row is None else int(row[0])

    async def lookup_or_reserve(
        self, key: str, now: float, hold: Hold
    ) -> tuple[CacheEntry | None, int | None]:
        """One trip: the lookup, and the hold only when it found nothing."""
        found, held = await self.trips.run_all(
            [(CACHE_GET, (key, now)), (_RESERVE, _reserve_params(hold))], until_rows=True
        )
        if found:
            return cache_entry(found[0]), None
        return None, int(held[0][0]) if held else None

    async def record(self, row: LedgerRow) -> None:
        values = {column: getattr(row, column) for column in LEDGER_COLUMNS}
        tags: list[Statement] = [(INSERT_TAG, tag) for tag in tag_rows([row])]
        await self._all_in_one_trip([(_RECORD, values), *tags])

    async def record_many(self, rows: list[LedgerRow]) -> None:
        await self._many(_RECORD, [{c: getattr(r, c) for c in LEDGER_COLUMNS} for r in rows])
        await self._many(INSERT_TAG, tag_rows(rows))

    async def settle_orphans(self, now: float, dead_owners: Collection[str] = ()) -> int:
        owners = sorted(dead_owners)
        marks = ", ".join("?" * len(owners))
        held_by_dead = f" OR owner IN ({marks})" if owners else ""
        found = await self._all(
            f"SELECT {ORPHAN_COLUMNS} FROM reservations WHERE expires_at <= ?{held_by_dead}",
            (now, *owners),
        )
        if not found:
            return 0
        rows = [orphan_row(*reservation) for reservation in found]
        # Statement by statement, each atomic, so nothing else on the connection is caught in a
        # transaction of ours: a row inserted settles its hold by trigger; a request that has its
        # row already keeps it (no-op), and its hold just goes.
        await self.db.executemany(
            _RECORD, [{c: getattr(r, c) for c in LEDGER_COLUMNS} for r in rows]
        )
        await self.db.executemany("DELETE FROM reservations WHERE id = ?", [(r[0],) for r in found])
        return len(rows)

    async def usage(self, where: UsageFilter, group_by: str) -> list[dict[str, Any]]:
        sql, params = usage_query(where, group_by)
        return usage_rows(await self._all(sql, params), group_by)

    # Moving between stores (used by `gateway db copy`, with nothing else on the connection).

    async def dump(self, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        assert table in COPIED_TABLES
        async with self.db.execute(f"SELECT * FROM {table} ORDER BY 1") as cursor:
            rows = [tuple(row) for row in await cursor.fetchall()]
            columns = [d[0] for d in cursor.description]
        return columns, rows

    async def load(self, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        assert table in COPIED_TABLES
        insert = (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        )
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            if table == "spend":  # as copied, not as the ledger's triggers just made it
                await self.db.execute("DELETE FROM spend")
            await self.db.executemany(insert, rows)
            await self.db.execute("COMMIT")
        except BaseException:
            await self.db.execute("ROLLBACK")
            raise
        self._keys.changed()

    async def clear(self) -> None:
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            for table in reversed(COPIED_TABLES):
                await self.db.execute(f"DELETE FROM {table}")
            await self.db.execute("DELETE FROM cache_unused")
            await self.db.execute("DELETE FROM usage_daily")
            await self.db.execute("COMMIT")
        except BaseException:
            await self.db.execute("ROLLBACK")
            raise
        self._keys.changed()

    async def totals(self) -> dict[str, int]:
        rows = await self._all(" UNION ALL ".join(TOTALS_SQL))
        return {row[0]: int(row[1]) for row in rows}
