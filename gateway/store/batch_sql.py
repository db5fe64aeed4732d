"""The Batch API's records, the same SQL on both engines: files a team uploaded and their
checked lines, batches with their hold, and the lease one replica takes to settle a batch.

What holds: a file or batch is found only with its team's id (another team's id finds nothing,
exactly as an id that does not exist); a batch is leased by one process at a time (until its
lease runs out, so a dead one's batch passes to another); a settled batch is never settled again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from gateway.store.records import BatchFile, BatchLine, BatchRecord
from gateway.store.sql import LEASE, changes_sql

_FILE_COLUMNS = tuple(f.name for f in dataclasses.fields(BatchFile))
_LINE_COLUMNS = tuple(f.name for f in dataclasses.fields(BatchLine))
_BATCH_COLUMNS = tuple(f.name for f in dataclasses.fields(BatchRecord))


def _insert(table: str, columns: tuple[str, ...]) -> str:
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"
    )


# A file recorded again (a batch settled again after a crash) is a no-op.
_ADD_FILE = _insert("batch_files", _FILE_COLUMNS) + " ON CONFLICT (id) DO NOTHING"
_ADD_LINE = _insert("batch_lines", _LINE_COLUMNS)
_ADD_BATCH = _insert("batches", _BATCH_COLUMNS)
_FILE = f"SELECT {', '.join(_FILE_COLUMNS)} FROM batch_files"
_BATCH = f"SELECT {', '.join(_BATCH_COLUMNS)} FROM batches"
LINES_AT_ONCE = 1000  # a file's lines turned into rows and written at a time
KEYS_AT_ONCE = 200  # cache keys looked up in one statement
# What a settlement may change on a batch, besides its lease.
BATCH_CHANGES = frozenset(
    {
        "status",
        "upstream",
        "output_file_id",
        "error_file_id",
        "completed_lines",
        "failed_lines",
        "charged_nanos",
        "saved_nanos",
        "polled_at",
        "lease_owner",
        "upstream_id",
    }
)


def _param_name(number: int) -> str:
    """`k_` and `number` in letters (placeholders are `:` and lower-case letters)."""
    letters = ""
    while True:
        number, digit = divmod(number, 26)
        letters += chr(ord("a") + digit)
        if number == 0:
            return f"k_{letters}"


def _batch(row: Any) -> BatchRecord:
    values = list(row)
    values[_BATCH_COLUMNS.index("cache_write")] = bool(values[_BATCH_COLUMNS.index("cache_write")])
    return BatchRecord(*values)


class BatchSql:
    """The Store protocol's Batch API methods (base.py); each store supplies `_one`, `_all` and
    `_many` (many rows of one statement, in transactions of a few hundred rows)."""

    async def _one(self, sql: str, params: dict[str, Any]) -> Any:
        raise NotImplementedError

    async def _all(self, sql: str, params: dict[str, Any]) -> list[Any]:
        raise NotImplementedError

    async def _many(self, sql: str, rows: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    # Files

    async def add_file(self, file: BatchFile, lines: Iterable[BatchLine]) -> None:
        """The file's lines first, then the file: a file that is listed has all its lines.
        Lines are taken LINES_AT_ONCE at a time (a large file's never all as rows at once)."""
        chunk: list[dict[str, Any]] = []
        for line in lines:
            chunk.append(dataclasses.asdict(line))
            if len(chunk) == LINES_AT_ONCE:
                await self._many(_ADD_LINE, chunk)
                chunk = []
        await self._many(_ADD_LINE, chunk)
        await self._all(_ADD_FILE, dataclasses.asdict(file))

    async def get_file(self, file_id: str, team_id: int) -> BatchFile | None:
        row = await self._one(
            f"{_FILE} WHERE id = :id AND team_id = :team AND deleted_at IS NULL",
            {"id": file_id, "team": team_id},
        )
        return BatchFile(*row) if row else None

    async def list_files(
        self, team_id: int, purpose: str | None, limit: int, after: str | None
    ) -> list[BatchFile]:
        """The team's files, newest first; `after` (a file id) pages on past it."""
        conditions = ["team_id = :team", "deleted_at IS NULL"]
        params: dict[str, Any] = {"team": team_id, "limit": limit}
        if purpose is not None:
            conditions.append("purpose = :purpose")
            params["purpose"] = purpose
        if after is not None:
            conditions.append(
                "(created_at, id) < (SELECT created_at, id FROM batch_files WHERE id = :after)"
            )
            params["after"] = after
        rows = await self._all(
            f"{_FILE} WHERE {' AND '.join(conditions)}"
            " ORDER BY created_at DESC, id DESC LIMIT :limit",
            params,
        )
        return [BatchFile(*row) for row in rows]

    async def delete_file(self, file_id: str, team_id: int, now: int) -> bool:
        rows = await self._all(
            "UPDATE batch_files SET deleted_at = :now"
            " WHERE id = :id AND team_id = :team AND deleted_at IS NULL RETURNING id",
            {"id": file_id, "team": team_id, "now": now},
        )
        return bool(rows)

    async def file_lines(self, file_id: str) -> list[BatchLine]:
        """The file's lines, in the order they lie in it."""
        rows = await self._all(
            f"SELECT {', '.join(_LINE_COLUMNS)} FROM batch_lines WHERE file_id = :id ORDER BY line",
            {"id": file_id},
        )
        return [BatchLine(*row) for row in rows]

    # Batches

    async def add_batch(self, batch: BatchRecord) -> None:
        values = dataclasses.asdict(batch)
        values["cache_write"] = int(batch.cache_write)
        await self._all(_ADD_BATCH, values)

    async def get_batch(self, batch_id: str, team_id: int | None) -> BatchRecord | None:
        """The batch, if it is the team's (any team's with None)."""
        row = await self._one(
            f"{_BATCH} WHERE id = :id AND (CAST(:team AS BIGINT) IS NULL OR team_id = :team)",
            {"id": batch_id, "team": team_id},
        )
        return _batch(row) if row else None

    async def list_batches(
        self, team_id: int | None, limit: int, after: str | None = None
    ) -> list[BatchRecord]:
        """The team's batches (every team's with None), newest first."""
        conditions = ["(CAST(:team AS BIGINT) IS NULL OR team_id = :team)"]
        params: dict[str, Any] = {"team": team_id, "limit": limit}
        if after is not None:
            conditions.append(
                "(created_at, id) < (SELECT created_at, id FROM batches WHERE id = :after)"
            )
            params["after"] = after
        rows = await self._all(
            f"{_BATCH} WHERE {' AND '.join(conditions)}"
            " ORDER BY created_at DESC, id DESC LIMIT :limit",
            params,
        )
        return [_batch(row) for row in rows]

    async def batches_to_poll(self, before: float, limit: int) -> list[str]:
        """Unsettled batches running upstream, last polled before `before`, the longest
        waiting first."""
        rows = await self._all(
            "SELECT id FROM batches WHERE settled_at IS NULL AND upstream_id IS NOT NULL"
            " AND polled_at < :before"
            " ORDER BY polled_at LIMIT :limit",
            {"before": before, "limit": limit},
        )
        return [row[0] for row in rows]

    async def lease_batch(self, batch_id: str, owner: str, now: float, lease_s: float) -> bool:
        """Whether `owner` now holds the batch's lease (free, run out, or its own already)
        until `now + lease_s`; a settled batch is leased to no one."""
        rows = await self._all(
            LEASE.format(table="batches"),
            {"id": batch_id, "owner": owner, "until": now + lease_s, "now": now},
        )
        return bool(rows)

    async def update_batch(self, batch_id: str, **changes: Any) -> None:
        sql = changes_sql("batches", changes, BATCH_CHANGES)
        await self._all(sql, {**changes, "row_id": batch_id})

    async def finish_batch(self, batch_id: str, now: int, **changes: Any) -> None:
        """The batch is settled: its hold goes, then it is marked so (in this order, a crash in
        between leaves it to be settled again, which writes nothing twice)."""
        batch = await self.get_batch(batch_id, None)
        if batch is None:
            return
        if batch.reservation_id is not None:
            await self._all("DELETE FROM reservations WHERE id = :id", {"id": batch.reservation_id})
        await self.update_batch(batch_id, **changes)
        await self._all(
            "UPDATE batches SET settled_at = :now, lease_owner = NULL WHERE id = :id",
            {"id": batch_id, "now": now},
        )

    async def forget_batch(self, batch_id: str) -> None:
        """A batch upstream refused to create: it never was."""
        await self._all("DELETE FROM batches WHERE id = :id", {"id": batch_id})

    async def drop_hold(self, reservation_id: int) -> None:
        """A batch's hold goes without a row: upstream refused the batch, nothing was made."""
        await self._all("DELETE FROM reservations WHERE id = :id", {"id": reservation_id})

    async def fresh_cache_keys(self, keys: list[str], now: float) -> set[str]:
        """Which of `keys` have a fresh cache entry, looked up KEYS_AT_ONCE to a statement."""
        found: set[str] = set()
        for start in range(0, len(keys), KEYS_AT_ONCE):
            chunk = keys[start : start + KEYS_AT_ONCE]
            names = [_param_name(i) for i in range(len(chunk))]
            params: dict[str, Any] = dict(zip(names, chunk, strict=True))
            marks = ", ".join(f":{name}" for name in names)
            rows = await self._all(
                f"SELECT key FROM cache_entries WHERE key IN ({marks}) AND expires_at > :now",
                {**params, "now": now},
            )
            found.update(row[0] for row in rows)
        return found

    async def orphaned_hold_charged(self, batch_id: str) -> bool:
        """Whether the batch's hold ran out before it was settled and was charged as an orphan
        (then its lines must not be charged as well)."""
        return bool(
            await self._all("SELECT 1 FROM ledger WHERE request_id = :id", {"id": batch_id})
        )
