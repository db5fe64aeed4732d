"""The response cache's index in SQLite. Each method is one statement (or one per batch), so it
never interleaves with another request's statements on the shared connection."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

from gateway.outcome import CacheStatus
from gateway.store.base import CacheEntry, CacheStats

if TYPE_CHECKING:
    import aiosqlite

    from gateway.store.sqlite_trips import Statement


class Queries(Protocol):
    """What the index uses of the SQLite store (sqlite.py): its one connection and its
    helpers that run one statement."""

    @property
    def db(self) -> aiosqlite.Connection: ...
    async def _all(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[Any]: ...
    async def _one(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> Any: ...
    async def _all_in_one_trip(self, statements: list[Statement]) -> list[list[Any]]: ...


_ENTRY_COLUMNS = tuple(CacheEntry.__dataclass_fields__)  # the last one, `body`, is the inline body
# Through the view's trigger (migration 0008): each inline body registered, then the entry
# upserted (not INSERT OR REPLACE: a replacing insert deletes the old row without firing its
# delete triggers, and the triggers keep the cache's size).
_PUT = f"INSERT INTO cache_puts ({', '.join(_ENTRY_COLUMNS)}) VALUES {{rows}}"
CACHE_GET = (
    f"SELECT {', '.join('e.' + c for c in _ENTRY_COLUMNS[:-1])}, b.data"
    " FROM cache_entries e JOIN cache_bodies b ON b.sha256 = e.body_sha256"
    " WHERE e.key = ? AND e.expires_at > ?"
)
_BODY_BYTES = "SELECT COALESCE(SUM(size), 0) FROM cache_bodies"
_LIVE_BODY_BYTES = "SELECT bytes FROM cache_usage WHERE id = 1"  # kept by triggers
EVICTION_BATCH = 64
_SERVED_BY_CACHE = ", ".join(f"'{s.value}'" for s in CacheStatus if s.served_by_cache)

_RECENT = (
    f"SELECT {', '.join(_ENTRY_COLUMNS[:-1])} FROM cache_entries"
    " WHERE expires_at > ?{team} ORDER BY created_at DESC LIMIT ?"
)


def _row(entry: CacheEntry) -> list[Any]:
    values = {column: getattr(entry, column) for column in _ENTRY_COLUMNS}
    values["headers"] = json.dumps(entry.headers, sort_keys=True)
    values["last_hit_at"] = entry.last_hit_at or entry.created_at
    return [values[column] for column in _ENTRY_COLUMNS]


def cache_entry(row: Any) -> CacheEntry:
    values = dict(zip(_ENTRY_COLUMNS, row, strict=True))
    values["stream"] = bool(values["stream"])
    values["headers"] = json.loads(values["headers"])
    return CacheEntry(**values)


class SqliteCacheIndex:
    def __init__(self, store: Queries) -> None:
        self._store = store

    async def get(self, key: str, now: float) -> CacheEntry | None:
        row = await self._store._one(CACHE_GET, (key, now))
        return None if row is None else cache_entry(row)

    async def put(self, entry: CacheEntry) -> int:
        return await self.put_many([entry])

    async def put_many(self, entries: list[CacheEntry]) -> int:
        """One statement for the batch (one commit, whatever its size), then the bodies' total
        size after it, in the same trip. (Not by RETURNING: on a view, a row's RETURNING is read
        before that row's INSTEAD OF trigger has run, so it misses the last body.)"""
        latest = {entry.key: entry for entry in entries}  # a key twice: the last one counts
        rows = ", ".join(f"({', '.join('?' * len(_ENTRY_COLUMNS))})" for _ in latest)
        values = [value for entry in latest.values() for value in _row(entry)]
        _, used = await self._store._all_in_one_trip(
            [(_PUT.format(rows=rows), tuple(values)), (_LIVE_BODY_BYTES, ())]
        )
        return int(used[0][0])

    async def touch(self, hits: dict[str, tuple[int, float]]) -> None:
        if hits:
            await self._store.db.executemany(
                "UPDATE cache_entries SET hits = hits + ?, last_hit_at = MAX(last_hit_at, ?)"
                " WHERE key = ?",
                [(count, at, key) for key, (count, at) in hits.items()],
            )

    async def delete(self, key: str) -> None:
        await self._store._all("DELETE FROM cache_entries WHERE key = ?", (key,))

    async def delete_body(self, body_sha256: str) -> int:
        rows = await self._store._all(
            "DELETE FROM cache_entries WHERE body_sha256 = ? RETURNING key", (body_sha256,)
        )
        return len(rows)

    async def delete_expired(self, now: float) -> int:
        rows = await self._store._all(
            "DELETE FROM cache_entries WHERE expires_at <= ? RETURNING key", (now,)
        )
        return len(rows)

    async def purge(self, *, team_id: int | None, key_id: str | None) -> int:
        conditions: list[str] = ["1 = 1"]
        params: list[Any] = []
        if team_id is not None:
            conditions.append("team_id = ?")
            params.append(team_id)
        if key_id is not None:
            conditions.append("key_id = ?")
            params.append(key_id)
        rows = await self._store._all(
            f"DELETE FROM cache_entries WHERE {' AND '.join(conditions)} RETURNING key",
            tuple(params),
        )
        return len(rows)

    async def evict_to(self, max_bytes: int) -> int:
        evicted = 0
        while (excess := (await self._store._one(_LIVE_BODY_BYTES))[0] - max_bytes) > 0:
            # Least recently used first, as few as free the excess if their bodies are theirs
            # alone; a shared body frees less, and the loop takes more.
            candidates = await self._store._all(
                "SELECT key, size FROM cache_entries ORDER BY last_hit_at LIMIT ?",
                (EVICTION_BATCH,),
            )
            if not candidates:
                break
            doomed = []
            for key, size in candidates:
                doomed.append(key)
                excess -= size
                if excess <= 0:
                    break
            await self._store._all(
                f"DELETE FROM cache_entries WHERE key IN ({', '.join('?' * len(doomed))})",
                tuple(doomed),
            )
            evicted += len(doomed)
        return evicted

    async def used_bytes(self) -> int:
        return int((await self._store._one(_LIVE_BODY_BYTES))[0])

    async def unused_bodies(self) -> list[str]:
        rows = await self._store._all("DELETE FROM cache_unused RETURNING sha256")
        return [row[0] for row in rows]

    async def bodies(self) -> list[tuple[str, int]]:
        """The bodies stored as files: (sha256, size)."""
        rows = await self._store._all(
            "SELECT sha256, size FROM cache_bodies WHERE data IS NULL ORDER BY sha256"
        )
        return [(row[0], row[1]) for row in rows]

    async def inline_bodies(self) -> list[tuple[str, bytes]]:
        """The bodies stored in the index: (sha256, body)."""
        rows = await self._store._all(
            "SELECT sha256, data FROM cache_bodies WHERE data IS NOT NULL ORDER BY sha256"
        )
        return [(row[0], bytes(row[1])) for row in rows]

    async def stats(self) -> CacheStats:
        entries, hits = await self._store._one(
            "SELECT COUNT(*), COALESCE(SUM(hits), 0) FROM cache_entries"
        )
        bodies, size = await self._store._one(f"SELECT COUNT(*), ({_BODY_BYTES}) FROM cache_bodies")
        rows = await self._store._all(
            "SELECT t.name, COUNT(e.key), COALESCE(SUM(e.size), 0), COALESCE(SUM(e.hits), 0),"
            " COALESCE((SELECT SUM(d.saved_nanos) FROM usage_daily d WHERE d.team_id = t.id"
            f"   AND d.cache_status IN ({_SERVED_BY_CACHE})), 0)"
            " FROM teams t LEFT JOIN cache_entries e ON e.team_id = t.id"
            " GROUP BY t.id ORDER BY t.name"
        )
        by_team = [
            {"team": r[0], "entries": r[1], "bytes": r[2], "hits": r[3], "saved_nanos": r[4]}
            for r in rows
        ]
        return CacheStats(entries, hits, bodies, size, by_team)

    async def recent(self, team_id: int | None, limit: int, now: float) -> list[CacheEntry]:
        team = "" if team_id is None else " AND team_id = ?"
        params = (now, *(() if team_id is None else (team_id,)), limit)
        rows = await self._store._all(_RECENT.format(team=team), params)
        return [cache_entry((*row, None)) for row in rows]
