"""PostgreSQL through asyncpg: a pool shared by the process, for several replicas on one database.

What holds, across any number of replicas:
- A reservation is one atomic step and one round trip (`gateway_reserve`, migration 0002): the
  key's and the team's rows are locked (`FOR UPDATE`, key first, then team, so two reservations
  never wait on each other in a cycle), and only then is spent + held + estimate checked against
  both budgets and the hold inserted. Row locks rather
  than SERIALIZABLE: reservations on one team queue for a moment instead of failing and retrying,
  and reservations on different teams never touch.
- A ledger row settles its request in the same statement (data-modifying CTEs): the row, the
  hold it releases and the spend counters it grows commit together or not at all; a row written
  again (journal replay, an orphan settled twice) changes nothing.
- Migrations apply once, in order, under an advisory lock, so replicas starting together wait for
  one another instead of racing.
- No call waits longer than `timeout_s` (GATEWAY_DATABASE_TIMEOUT_S): not for a connection from
  the pool, not for a row lock (`lock_timeout`), not for its statement (`statement_timeout`, and
  asyncpg's own timeout should the server not answer at all). Past it the call raises, and the
  request gets a clean 503 instead of waiting with every other.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections.abc import AsyncIterator, Collection
from pathlib import Path
from typing import Any

import asyncpg

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
from gateway.store.postgres_cache import GET_ENTRY, PostgresCacheIndex, entry_from_row
from gateway.store.response_sql import ResponseSql
from gateway.store.shared import SharedSql
from gateway.store.sql import (
    ADD_TO_DAILY,
    INSERT_TAG,
    LEDGER_COLUMNS,
    ORPHAN_COLUMNS,
    SUM_LEDGER_BY_DAY,
    now_text,
    tag_rows,
    usage_query,
    usage_rows,
)
from gateway.store.webhook_sql import WebhookSql

POSTGRES_MIGRATIONS = MIGRATIONS_DIR / "postgres"
MIGRATION_LOCK = 0x6761_7465_7761_79  # "gateway": the advisory lock migrations run under
# One statement: the row, the hold it settles, the spend counters and the day's sums it grows.
_RECORD = f"""
WITH row AS (
    INSERT INTO ledger ({", ".join(LEDGER_COLUMNS)})
    VALUES ({", ".join(":" + c for c in LEDGER_COLUMNS)})
    ON CONFLICT (request_id) DO NOTHING
    RETURNING *
), settled AS (
    DELETE FROM reservations r USING row
    WHERE r.id = row.reservation_id OR r.request_id = row.request_id
), grown AS (
    INSERT INTO spend (scope, scope_id, period, spent_nanos)
    SELECT s.scope, s.scope_id, s.period, row.cost_nanos
    FROM row CROSS JOIN LATERAL (VALUES
        ('team', row.team_id::text, 'total'), ('team', row.team_id::text, 'day:' || row.day),
        ('team', row.team_id::text, 'week:' || row.week),
        ('team', row.team_id::text, 'month:' || row.month),
        ('key', row.key_id, 'total'), ('key', row.key_id, 'day:' || row.day),
        ('key', row.key_id, 'week:' || row.week), ('key', row.key_id, 'month:' || row.month)
    ) AS s (scope, scope_id, period)
    WHERE row.cost_nanos > 0
    ON CONFLICT (scope, scope_id, period)
    DO UPDATE SET spent_nanos = spend.spent_nanos + excluded.spent_nanos
), summed AS (
    {ADD_TO_DAILY}
)
SELECT COUNT(*) FROM row
"""
# The cache lookup, and only when it finds nothing the hold (`gateway_reserve`): one round trip
# for a miss. The first column is the hold's id (NULL on a hit, or when a budget cannot hold it).
_GET_OR_RESERVE = f"""
WITH hit AS ({GET_ENTRY})
SELECT (SELECT gateway_reserve($3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
        WHERE NOT EXISTS (SELECT 1 FROM hit)) AS held, hit.*
FROM (SELECT 1) AS one LEFT JOIN hit ON TRUE
"""
BULK_ROWS = 500  # rows written in one transaction by _many
_NAMED = re.compile(r"(?<![:\w]):([a-z_]+)\b")


def named(sql: str, params: dict[str, Any]) -> tuple[str, list[Any]]:
    """`:name` placeholders (as the SQLite store writes them) as asyncpg's `$n`, and the
    arguments in that order."""
    query, names = _numbered(sql)
    return query, [params[name] for name in names]


@functools.lru_cache(maxsize=256)
def _numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """Rewritten once per statement text, not on every call (the statements are constants)."""
    order: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in order:
            order[name] = len(order) + 1
        return f"${order[name]}"

    return _NAMED.sub(number, sql), tuple(order)


def _ledger_values(row: LedgerRow) -> dict[str, Any]:
    values = {column: getattr(row, column) for column in LEDGER_COLUMNS}
    values["stream"] = int(values["stream"])
    if values["latency_ms"] is not None:
        values["latency_ms"] = float(values["latency_ms"])
    return values


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A connection goes back to the pool as it is (asyncpg has rolled back a transaction left
    open): the store leaves nothing else behind (no LISTEN, no cursor, advisory locks and
    `unbounded`'s settings undone by their owners), so the default reset's round trip on every
    release (`RESET ALL`, `UNLISTEN *`, ...) buys nothing."""


class BoundedPool:
    """asyncpg's pool, with the wait for a connection bounded as well as the statement (its own
    `fetch` and friends wait for a connection as long as it takes)."""

    def __init__(self, pool: asyncpg.Pool, timeout_s: float) -> None:
        self._pool = pool
        self.timeout_s = timeout_s

    def acquire(self) -> Any:
        return self._pool.acquire(timeout=self.timeout_s)

    @contextlib.asynccontextmanager
    async def unbounded(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection for work that may rightly take long (migrations, `gateway db copy`):
        the server's lock and statement timeouts are lifted until it goes back to the pool
        (then restored)."""
        async with self.acquire() as conn:
            await conn.execute("SET statement_timeout = 0; SET lock_timeout = 0")
            try:
                yield conn
            finally:  # back to the values the connection was opened with
                try:
                    await conn.execute("RESET statement_timeout; RESET lock_timeout")
                except Exception:
                    conn.terminate()  # its settings are unknown: never reused

    @property
    def _wait(self) -> float:
        # The server cancels a statement at timeout_s; this bounds a server that says nothing.
        return self.timeout_s + 1

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        async with self.acquire() as conn:
            return list(await conn.fetch(query, *args, timeout=self._wait))

    async def fetchrow(self, query: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchrow(query, *args, timeout=self._wait)

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchval(query, *args, timeout=self._wait)

    async def execute(self, query: str, *args: Any) -> str:
        async with self.acquire() as conn:
            return str(await conn.execute(query, *args, timeout=self._wait))

    async def executemany(self, query: str, args: Any) -> None:
        async with self.acquire() as conn:
            await conn.executemany(query, args, timeout=self._wait)

    async def close(self) -> None:
        await asyncio.wait_for(self._pool.close(), self.timeout_s * 2)


class PostgresStore(SharedSql, BatchSql, ResponseSql, WebhookSql):
    """The store for `postgresql://` URLs; several replicas share one database."""

    _duplicate = (asyncpg.UniqueViolationError,)

    def __init__(
        self,
        url: str,
        migrations_dir: Path = POSTGRES_MIGRATIONS,
        *,
        pool_size: int = 10,
        timeout_s: float = 5.0,
    ) -> None:
        self.url = url
        self.migrations_dir = migrations_dir
        self.pool_size = pool_size
        self.timeout_s = timeout_s
        self._pool: BoundedPool | None = None
        self._cache = PostgresCacheIndex(self)
        # Another replica's change is seen within MAX_AGE_S (or at once through Redis, when
        # one is configured); this process's own changes at once.
        self._keys = KeyCache(Generation(None), max_age_s=1.0)

    @property
    def keys(self) -> KeyCache:
        """The keys kept in memory (key_cache.py)."""
        return self._keys

    @property
    def cache(self) -> PostgresCacheIndex:
        return self._cache

    @property
    def pool(self) -> BoundedPool:
        if self._pool is None:
            raise RuntimeError("store is not connected")
        return self._pool

    async def connect(self) -> None:
        millis = str(int(self.timeout_s * 1000))
        pool = await asyncpg.create_pool(
            self.url,
            min_size=1,
            max_size=self.pool_size,
            timeout=self.timeout_s,  # connecting
            server_settings={"lock_timeout": millis, "statement_timeout": millis},
            reset=_keep_session,
        )
        self._pool = BoundedPool(pool, self.timeout_s)

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            with contextlib.suppress(TimeoutError):
                await pool.close()

    async def checkpoint(self) -> None:
        """Nothing to do: the server checkpoints on its own."""

    async def _all(self, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
        query, args = named(sql, params or {})
        return list(await self.pool.fetch(query, *args))

    async def _one(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        query, args = named(sql, params or {})
        return await self.pool.fetchrow(query, *args)

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")

    async def _many(self, sql: str, rows: list[dict[str, Any]]) -> None:
        """`sql` for every row, BULK_ROWS to a transaction, each sent in one pipelined trip
        (asyncpg's executemany), not a round trip per row."""
        if not rows:
            return
        query, names = _numbered(sql)
        async with self.pool.acquire() as conn:
            for start in range(0, len(rows), BULK_ROWS):
                chunk = [[row[name] for name in names] for row in rows[start : start + BULK_ROWS]]
                async with conn.transaction():
                    await conn.executemany(query, chunk, timeout=self.timeout_s * 4)

    async def migrate(self) -> list[str]:
        done = []
        async with self.pool.unbounded() as conn:
            # One replica migrates at a time; the others then find nothing left to do.
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
            try:
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations"
                    " (version TEXT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
                )
                applied = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
                for migration in pending_migrations(self.migrations_dir, applied):
                    async with conn.transaction():  # applied whole and recorded, or not at all
                        await conn.execute(migration.sql)
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, name, applied_at)"
                            " VALUES ($1, $2, $3)",
                            migration.version,
                            migration.name,
                            now_text(),
                        )
                    done.append(migration.name)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
        return done

    # Teams

    async def delete_team(self, name: str) -> int | None:
        async with self.pool.acquire() as conn, conn.transaction():
            # Not locked first: reservations lock a key, then its team; this revokes the keys
            # (locking them) before it marks the team, in the same order.
            team_id = await conn.fetchval(
                "SELECT id FROM teams WHERE name = $1 AND deleted_at IS NULL", name
            )
            if team_id is None:
                return None
            now = now_text()
            revoked = await conn.fetch(
                "UPDATE api_keys SET revoked_at = $1 WHERE team_id = $2 AND revoked_at IS NULL"
                " RETURNING id",
                now,
                team_id,
            )
            await conn.execute(
                "UPDATE teams SET deleted_at = $1, name = name || '~deleted~' || id WHERE id = $2",
                now,
                team_id,
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
        periods_now = periods.sql_case()
        reservation = await self.pool.fetchval(
            "SELECT gateway_reserve($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            key_id,
            team_id,
            amount_nanos,
            now_text(),
            float(now + ttl_s),
            float(now),
            request_id,
            owner,
            endpoint,
            model,
            periods_now["day"],
            periods_now["week"],
            periods_now["month"],
        )
        return None if reservation is None else int(reservation)

    async def lookup_or_reserve(
        self, key: str, now: float, hold: Hold
    ) -> tuple[CacheEntry | None, int | None]:
        """One round trip: the lookup, and the hold only when it found nothing."""
        day, week, month = (hold.periods.sql_case()[p] for p in ("day", "week", "month"))
        row = await self.pool.fetchrow(
            _GET_OR_RESERVE,
            key,
            float(now),
            hold.key_id,
            hold.team_id,
            hold.amount_nanos,
            now_text(),
            float(hold.now + hold.ttl_s),
            float(hold.now),
            hold.request_id,
            hold.owner,
            hold.endpoint,
            hold.model,
            day,
            week,
            month,
        )
        if row[1] is not None:  # the entry's key: a hit
            return entry_from_row(tuple(row)[1:]), None
        return None, None if row[0] is None else int(row[0])

    async def record(self, row: LedgerRow) -> None:
        await self._all(_RECORD, _ledger_values(row))
        if row.tags:
            await self._many(INSERT_TAG, tag_rows([row]))

    async def record_many(self, rows: list[LedgerRow]) -> None:
        await self._many(_RECORD, [_ledger_values(row) for row in rows])
        await self._many(INSERT_TAG, tag_rows(rows))

    async def settle_orphans(self, now: float, dead_owners: Collection[str] = ()) -> int:
        found = await self.pool.fetch(
            f"SELECT {ORPHAN_COLUMNS} FROM reservations"
            " WHERE expires_at <= $1 OR owner = ANY($2::text[])",
            float(now),
            sorted(dead_owners),
        )
        if not found:
            return 0
        query, _ = named(_RECORD, {c: None for c in LEDGER_COLUMNS})
        async with self.pool.acquire() as conn:
            for reservation in found:
                values = _ledger_values(orphan_row(*reservation))
                await conn.execute(query, *(values[c] for c in LEDGER_COLUMNS))
                await conn.execute("DELETE FROM reservations WHERE id = $1", reservation[0])
        return len(found)

    async def usage(self, where: UsageFilter, group_by: str) -> list[dict[str, Any]]:
        sql, params = usage_query(where, group_by)
        return usage_rows(await self._all(sql, params), group_by)

    # Moving between stores (`gateway db copy`).

    async def dump(self, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        assert table in COPIED_TABLES
        async with self.pool.unbounded() as conn:
            statement = await conn.prepare(f"SELECT * FROM {table} ORDER BY 1")
            columns = [attribute.name for attribute in statement.get_attributes()]
            rows = [tuple(record) for record in await statement.fetch()]
        return columns, rows

    async def load(self, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        assert table in COPIED_TABLES
        async with self.pool.unbounded() as conn, conn.transaction():
            types: dict[str, str] = {
                row[0]: row[1]
                for row in await conn.fetch(
                    "SELECT column_name, data_type FROM information_schema.columns"
                    " WHERE table_name = $1 AND table_schema = current_schema()",
                    table,
                )
            }
            convert = [_CONVERSIONS.get(types.get(column, ""), _same) for column in columns]
            records = [
                tuple(None if v is None else c(v) for c, v in zip(convert, row, strict=True))
                for row in rows
            ]
            await conn.copy_records_to_table(table, records=records, columns=columns)
            if table == "ledger":  # COPY wrote the rows without what _RECORD adds by the day
                await conn.execute("DELETE FROM usage_daily")
                await conn.execute(SUM_LEDGER_BY_DAY)
            if "id" in columns and types.get("id") == "bigint":  # the next id follows the copy
                await conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                    f" GREATEST((SELECT MAX(id) FROM {table}), 1))"
                )
        self._keys.changed()

    async def clear(self) -> None:
        async with self.pool.unbounded() as conn, conn.transaction():
            for table in reversed(COPIED_TABLES):
                await conn.execute(f"DELETE FROM {table}")
            await conn.execute("DELETE FROM cache_unused")
            await conn.execute("DELETE FROM usage_daily")
        self._keys.changed()

    async def totals(self) -> dict[str, int]:
        rows = await self.pool.fetch(" UNION ALL ".join(TOTALS_SQL))
        return {row[0]: int(row[1]) for row in rows}


def _same(value: Any) -> Any:
    return value


# SQLite gives what it stored; PostgreSQL's COPY wants each column's own type.
_CONVERSIONS: dict[str, Any] = {
    "boolean": bool,
    "double precision": float,
    "bigint": int,
    "integer": int,
    "text": str,
    "bytea": bytes,
}
