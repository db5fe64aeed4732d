"""The Responses API's records, the same SQL on both engines: each response the gateway relayed,
owned by its team, and the background ones tracked until they end.

What holds: a response is found only with its team's id (another team's finds nothing, exactly as
an id that does not exist; a deleted one neither); a background response is leased by one
attempt at a time; its hold, handed over to the store, belongs to no process until it is charged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gateway.store.records import ResponseRecord
from gateway.store.sql import LEASE, changes_sql

_COLUMNS = tuple(f.name for f in dataclasses.fields(ResponseRecord))
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM responses"
_CHANGES = frozenset({"status", "settled_at", "polled_at", "lease_owner"})


def _record(row: Any) -> ResponseRecord:
    values = list(row)
    at = _COLUMNS.index("background")
    values[at] = bool(values[at])
    return ResponseRecord(*values)


class ResponseSql:
    """The Store protocol's Responses methods (base.py); each store supplies `_one` and `_all`."""

    async def _one(self, sql: str, params: dict[str, Any]) -> Any:
        raise NotImplementedError

    async def _all(self, sql: str, params: dict[str, Any]) -> list[Any]:
        raise NotImplementedError

    async def add_response(self, record: ResponseRecord) -> None:
        """Recorded once: the same id again (a replayed stream) is a no-op."""
        values = dataclasses.asdict(record)
        values["background"] = int(record.background)
        await self._all(
            f"INSERT INTO responses ({', '.join(_COLUMNS)})"
            f" VALUES ({', '.join(':' + c for c in _COLUMNS)}) ON CONFLICT (id) DO NOTHING",
            values,
        )

    async def get_response(self, response_id: str, team_id: int | None) -> ResponseRecord | None:
        """The response, if it is the team's (any team's with None) and not deleted."""
        row = await self._one(
            f"{_SELECT} WHERE id = :id AND deleted_at IS NULL"
            " AND (CAST(:team AS BIGINT) IS NULL OR team_id = :team)",
            {"id": response_id, "team": team_id},
        )
        return _record(row) if row else None

    async def delete_response(self, response_id: str, team_id: int, now: int) -> None:
        await self._all(
            "UPDATE responses SET deleted_at = :now WHERE id = :id AND team_id = :team",
            {"id": response_id, "team": team_id, "now": now},
        )

    async def hand_over_hold(self, reservation_id: int, expires_at: float) -> None:
        """The hold outlives the request that made it: no process owns it (none's death settles
        it), and it lasts until `expires_at` or until its ledger row is written."""
        await self._all(
            "UPDATE reservations SET owner = NULL, expires_at = :until WHERE id = :id",
            {"id": reservation_id, "until": expires_at},
        )

    async def responses_to_poll(self, before: float, limit: int) -> list[str]:
        rows = await self._all(
            "SELECT id FROM responses WHERE background = 1 AND settled_at IS NULL"
            " AND polled_at < :before ORDER BY polled_at LIMIT :limit",
            {"before": before, "limit": limit},
        )
        return [row[0] for row in rows]

    async def lease_response(
        self, response_id: str, owner: str, now: float, lease_s: float
    ) -> bool:
        rows = await self._all(
            LEASE.format(table="responses"),
            {"id": response_id, "owner": owner, "until": now + lease_s, "now": now},
        )
        return bool(rows)

    async def update_response(self, response_id: str, **changes: Any) -> None:
        sql = changes_sql("responses", changes, _CHANGES)
        await self._all(sql, {**changes, "row_id": response_id})
