"""The response cache's index in PostgreSQL: the same tables and meanings as SQLite's, the same
size and sweep bookkeeping by triggers (postgres/0001_schema.sql); a batch of stores is one
transaction."""

from __future__ import annotations

import json
from typing import Any, Protocol

from gateway.outcome import CacheStatus
from gateway.store.base import CacheEntry, CacheStats


class Pool(Protocol):
    """What the index uses of the PostgreSQL store's pool (postgres.py's BoundedPool)."""

    def acquire(self) -> Any: ...
    async def fetch(self, query: str, *args: Any) -> list[Any]: ...
    async def fetchrow(self, query: str, *args: Any) -> Any: ...
    async def fetchval(self, query: str, *args: Any) -> Any: ...
    async def execute(self, query: str, *args: Any) -> str: ...
    async def executemany(self, query: str, args: Any) -> None: ...


class Pooled(Protocol):
    @property
    def pool(self) -> Pool: ...


_ENTRY_COLUMNS = tuple(CacheEntry.__dataclass_fields__)[:-1]  # without `body`, kept in bodies
_PUT_BODY = (
    "INSERT INTO cache_bodies (sha256, size, created_at, data) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (sha256) DO NOTHING"
)
_PUT_ENTRY = (
    f"INSERT INTO cache_entries ({', '.join(_ENTRY_COLUMNS)})"
    f" VALUES ({', '.join(f'${i}' for i in range(1, len(_ENTRY_COLUMNS) + 1))})"
    " ON CONFLICT (key) DO UPDATE SET"
    f" {', '.join(f'{c} = excluded.{c}' for c in _ENTRY_COLUMNS if c != 'key')}"
)
GET_ENTRY = (
    f"SELECT {', '.join('e.' + c for c in _ENTRY_COLUMNS)}, b.data"
    " FROM cache_entries e JOIN cache_bodies b ON b.sha256 = e.body_sha256"
    " WHERE e.key = $1 AND e.expires_at > $2"
)
_LIVE_BODY_BYTES = "SELECT bytes FROM cache_usage WHERE id = 1"
EVICTION_BATCH = 64
_SERVED_BY_CACHE = [s.value for s in CacheStatus if s.served_by_cache]

_RECENT = (
    f"SELECT {', '.join(_ENTRY_COLUMNS)} FROM cache_entries"
    " WHERE expires_at > $1 AND ($2::BIGINT IS NULL OR team_id = $2)"
    " ORDER BY created_at DESC LIMIT $3"
)


def _row(entry: CacheEntry) -> list[Any]:
    values = {column: getattr(entry, column) for column in _ENTRY_COLUMNS}
    values["headers"] = json.dumps(entry.headers, sort_keys=True)
    values["last_hit_at"] = float(entry.last_hit_at or entry.created_at)
    for column in ("created_at", "expires_at"):
        values[column] = float(values[column])
    return [values[column] for column in _ENTRY_COLUMNS]


def entry_from_row(row: Any) -> CacheEntry:
    values = dict(zip((*_ENTRY_COLUMNS, "body"), row, strict=True))
    values["headers"] = json.loads(values["headers"])
    values["body"] = None if values["body"] is None else bytes(values["body"])
    return CacheEntry(**values)


class PostgresCacheIndex:
    def __init__(self, store: Pooled) -> None:
        self._store = store

    async def get(self, key: str, now: float) -> CacheEntry | None:
        row = await self._store.pool.fetchrow(GET_ENTRY, key, float(now))
        return None if row is None else entry_from_row(row)

    async def put(self, entry: CacheEntry) -> int:
        return await self.put_many([entry])

    async def put_many(self, entries: list[CacheEntry]) -> int:
        """One transaction for the batch: each body registered (inline bodies with their bytes),
        then each entry upserted; the bodies' total size after it."""
        latest = {entry.key: entry for entry in entries}
        async with self._store.pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                _PUT_BODY,
                [(e.body_sha256, e.size, float(e.created_at), e.body) for e in latest.values()],
            )
            await conn.executemany(_PUT_ENTRY, [_row(e) for e in latest.values()])
            return int(await conn.fetchval(_LIVE_BODY_BYTES))

    async def touch(self, hits: dict[str, tuple[int, float]]) -> None:
        if hits:
            await self._store.pool.executemany(
                "UPDATE cache_entries SET hits = hits + $1,"
                " last_hit_at = GREATEST(last_hit_at, $2) WHERE key = $3",
                [(count, float(at), key) for key, (count, at) in hits.items()],
            )

    async def delete(self, key: str) -> None:
        await self._store.pool.execute("DELETE FROM cache_entries WHERE key = $1", key)

    async def delete_body(self, body_sha256: str) -> int:
        rows = await self._store.pool.fetch(
            "DELETE FROM cache_entries WHERE body_sha256 = $1 RETURNING key", body_sha256
        )
        return len(rows)

    async def delete_expired(self, now: float) -> int:
        rows = await self._store.pool.fetch(
            "DELETE FROM cache_entries WHERE expires_at <= $1 RETURNING key", float(now)
        )
        return len(rows)

    async def purge(self, *, team_id: int | None, key_id: str | None) -> int:
        rows = await self._store.pool.fetch(
            "DELETE FROM cache_entries WHERE ($1::bigint IS NULL OR team_id = $1)"
            " AND ($2::text IS NULL OR key_id = $2) RETURNING key",
            team_id,
            key_id,
        )
        return len(rows)

    async def evict_to(self, max_bytes: int) -> int:
        evicted = 0
        pool = self._store.pool
        while (excess := int(await pool.fetchval(_LIVE_BODY_BYTES)) - max_bytes) > 0:
            candidates = await pool.fetch(
                "SELECT key, size FROM cache_entries ORDER BY last_hit_at LIMIT $1",
                EVICTION_BATCH,
            )
            if not candidates:
                break
            doomed = []
            for key, size in candidates:
                doomed.append(key)
                excess -= size
                if excess <= 0:
                    break
            await pool.execute("DELETE FROM cache_entries WHERE key = ANY($1::text[])", doomed)
            evicted += len(doomed)
        return evicted

    async def used_bytes(self) -> int:
        return int(await self._store.pool.fetchval(_LIVE_BODY_BYTES))

    async def unused_bodies(self) -> list[str]:
        rows = await self._store.pool.fetch("DELETE FROM cache_unused RETURNING sha256")
        return [row[0] for row in rows]

    async def bodies(self) -> list[tuple[str, int]]:
        rows = await self._store.pool.fetch(
            "SELECT sha256, size FROM cache_bodies WHERE data IS NULL ORDER BY sha256"
        )
        return [(row[0], int(row[1])) for row in rows]

    async def inline_bodies(self) -> list[tuple[str, bytes]]:
        rows = await self._store.pool.fetch(
            "SELECT sha256, data FROM cache_bodies WHERE data IS NOT NULL ORDER BY sha256"
        )
        return [(row[0], bytes(row[1])) for row in rows]

    async def stats(self) -> CacheStats:
        pool = self._store.pool
        counts = await pool.fetchrow(
            "SELECT (SELECT COUNT(*) FROM cache_entries), (SELECT COALESCE(SUM(hits), 0)"
            " FROM cache_entries), COUNT(*), COALESCE(SUM(size), 0) FROM cache_bodies"
        )
        assert counts is not None  # an aggregate always has its row
        entries, hits, bodies, size = counts
        rows = await pool.fetch(
            "SELECT t.name, COUNT(e.key), COALESCE(SUM(e.size), 0), COALESCE(SUM(e.hits), 0),"
            " COALESCE((SELECT SUM(d.saved_nanos) FROM usage_daily d WHERE d.team_id = t.id"
            "   AND d.cache_status = ANY($1::text[])), 0)"
            " FROM teams t LEFT JOIN cache_entries e ON e.team_id = t.id"
            " GROUP BY t.id ORDER BY t.name",
            _SERVED_BY_CACHE,
        )
        by_team = [
            {
                "team": r[0],
                "entries": int(r[1]),
                "bytes": int(r[2]),
                "hits": int(r[3]),
                "saved_nanos": int(r[4]),
            }
            for r in rows
        ]
        return CacheStats(int(entries), int(hits), int(bodies), int(size), by_team)

    async def recent(self, team_id: int | None, limit: int, now: float) -> list[CacheEntry]:
        rows = await self._store.pool.fetch(_RECENT, float(now), team_id, limit)
        return [entry_from_row((*row, None)) for row in rows]
