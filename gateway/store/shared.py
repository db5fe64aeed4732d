"""What both stores say alike, written once: teams and their keys, a scope's spend, heartbeats,
the holders of holds and ended console sessions. The statements use `:name` placeholders, which
SQLite takes as they are and the PostgreSQL store turns into `$n`. Each store mixes this in and
supplies `_one`, `_all`, its key cache and the error its driver raises on a duplicate; what the
engines do differently (a hold, a ledger row, deleting a team in one locked transaction, settling
orphans, the cache index) stays each store's own.

What holds: every change to a team or a key tells the key cache (`changed()`), so no replica's
memory serves a key longer than its cache allows; a duplicate name or id is a `Conflict`.
"""

from __future__ import annotations

from typing import Any

from gateway.accounting.periods import Periods
from gateway.store.base import CacheEntry, Conflict, Hold, Spend
from gateway.store.key_cache import KeyCache
from gateway.store.records import ApiKey, Team
from gateway.store.sql import (
    CONSOLE_SESSION_ENDED,
    END_CONSOLE_SESSION,
    FORGET_EXPIRED_SESSIONS,
    FORGET_OLD_HEARTBEATS,
    HEARTBEAT,
    KEY_AND_TEAM,
    KEY_COLUMNS,
    KEY_FIELDS,
    SILENT_HOLDERS,
    SPEND,
    TEAM_COLUMNS,
    limit_values,
    now_text,
)

KEY_BY_ID = f"SELECT {KEY_COLUMNS} FROM api_keys k JOIN teams t ON t.id = k.team_id"


class SharedSql:
    """The Store protocol's methods (base.py) that are the same SQL on both engines."""

    _keys: KeyCache
    _duplicate: tuple[type[Exception], ...] = ()  # what the driver raises on a unique violation

    async def _one(self, sql: str, params: dict[str, Any]) -> Any:
        raise NotImplementedError

    async def _all(self, sql: str, params: dict[str, Any]) -> list[Any]:
        raise NotImplementedError

    async def lookup_or_reserve(
        self, key: str, now: float, hold: Hold
    ) -> tuple[CacheEntry | None, int | None]:
        entry = await self.cache.get(key, now)  # type: ignore[attr-defined]
        if entry is not None:
            return entry, None
        return None, await self.reserve(**hold.terms())  # type: ignore[attr-defined]

    # Teams

    async def create_team(self, name: str, **limits: Any) -> Team:
        values = limit_values(limits)
        try:
            row = await self._one(
                "INSERT INTO teams (name, budget_nanos, budget_period, rpm, ipm, policy,"
                " alert_thresholds, price_multiplier, created_at) VALUES (:name, :budget_nanos,"
                " :budget_period, :rpm, :ipm, :policy, :alert_thresholds, :price_multiplier,"
                " :created_at)"
                f" RETURNING {TEAM_COLUMNS}",
                {"name": name, **values, "created_at": now_text()},
            )
        except self._duplicate as exc:
            raise Conflict(f"team {name!r} exists already") from exc
        return Team(*row)

    async def get_team(self, name: str) -> Team | None:
        row = await self._one(
            f"SELECT {TEAM_COLUMNS} FROM teams WHERE name = :name AND deleted_at IS NULL",
            {"name": name},
        )
        return Team(*row) if row else None

    async def list_teams(self) -> list[Team]:
        rows = await self._all(
            f"SELECT {TEAM_COLUMNS} FROM teams WHERE deleted_at IS NULL ORDER BY name", {}
        )
        return [Team(*row) for row in rows]

    async def update_team(self, name: str, **changes: Any) -> Team | None:
        if not changes:
            return await self.get_team(name)
        limit_values(changes)  # rejects unknown fields
        assignments = ", ".join(f"{field} = :{field}" for field in changes)
        row = await self._one(
            f"UPDATE teams SET {assignments} WHERE name = :team_name AND deleted_at IS NULL"
            f" RETURNING {TEAM_COLUMNS}",
            {**changes, "team_name": name},
        )
        self._keys.changed()
        return Team(*row) if row else None

    # Keys

    async def create_key(
        self,
        *,
        key_id: str,
        team_id: int,
        name: str | None,
        key_hash: str,
        prefix: str,
        **limits: Any,
    ) -> ApiKey:
        values = limit_values(limits)
        try:
            await self._all(
                "INSERT INTO api_keys (id, team_id, name, key_hash, prefix, budget_nanos,"
                " budget_period, rpm, ipm, policy, alert_thresholds, created_at) VALUES (:id,"
                " :team_id, :name, :key_hash, :prefix, :budget_nanos, :budget_period, :rpm,"
                " :ipm, :policy, :alert_thresholds, :created_at)",
                {
                    "id": key_id,
                    "team_id": team_id,
                    "name": name,
                    "key_hash": key_hash,
                    "prefix": prefix,
                    **values,
                    "created_at": now_text(),
                },
            )
        except self._duplicate as exc:
            raise Conflict("key exists already") from exc
        key = await self.get_key(key_id)
        assert key is not None
        return key

    async def get_key(self, key_id: str) -> ApiKey | None:
        row = await self._one(f"{KEY_BY_ID} WHERE k.id = :id", {"id": key_id})
        return ApiKey(*row) if row else None

    async def find_key_by_hash(self, key_hash: str) -> tuple[ApiKey, Team] | None:
        """From memory while no key or team has changed since it was read (key_cache.py)."""
        if (cached := self._keys.get(key_hash)) is not None:
            return cached
        generation = self._keys.generation.value()
        row = await self._one(KEY_AND_TEAM, {"hash": key_hash})
        if row is None:
            return None
        key = ApiKey(*row[:KEY_FIELDS])
        team = Team(key.team_id, key.team_name, *row[KEY_FIELDS:])
        self._keys.put(key_hash, (key, team), generation)
        return key, team

    async def list_keys(self, team_id: int | None = None) -> list[ApiKey]:
        where = "WHERE k.team_id = :team_id" if team_id is not None else ""
        rows = await self._all(
            f"{KEY_BY_ID} {where} ORDER BY k.created_at, k.id",
            {"team_id": team_id} if team_id is not None else {},
        )
        return [ApiKey(*row) for row in rows]

    async def update_key(self, key_id: str, **changes: Any) -> ApiKey | None:
        name_change = {"name": changes.pop("name")} if "name" in changes else {}
        limit_values(changes)
        changes.update(name_change)
        if changes:
            assignments = ", ".join(f"{field} = :{field}" for field in changes)
            await self._all(
                f"UPDATE api_keys SET {assignments} WHERE id = :key_id",
                {**changes, "key_id": key_id},
            )
            self._keys.changed()
        return await self.get_key(key_id)

    async def revoke_key(self, key_id: str) -> ApiKey | None:
        await self._all(
            "UPDATE api_keys SET revoked_at = :now WHERE id = :id AND revoked_at IS NULL",
            {"now": now_text(), "id": key_id},
        )
        self._keys.changed()
        return await self.get_key(key_id)

    async def rotate_key(self, key_id: str, *, key_hash: str, prefix: str) -> ApiKey | None:
        rows = await self._all(
            "UPDATE api_keys SET key_hash = :hash, prefix = :prefix"
            " WHERE id = :id AND revoked_at IS NULL RETURNING id",
            {"hash": key_hash, "prefix": prefix, "id": key_id},
        )
        self._keys.changed()
        return await self.get_key(key_id) if rows else None

    # Budgets and the processes that hold them

    async def spend(self, scope: str, scope_id: str, periods: Periods, now: float) -> Spend:
        row = await self._one(
            SPEND[scope], {"id": scope_id, "now": float(now), **periods.sql_case()}
        )
        if row is None:
            return Spend(None, "total", 0, 0)
        return Spend(row[0], row[1], int(row[2]), int(row[3]))

    async def holders(self) -> list[str]:
        rows = await self._all(
            "SELECT DISTINCT owner FROM reservations WHERE owner IS NOT NULL", {}
        )
        return [row[0] for row in rows]

    async def heartbeat(self, owner: str, now: float) -> None:
        await self._all(HEARTBEAT, {"owner": owner, "now": now})
        await self._all(FORGET_OLD_HEARTBEATS, {"now": now})

    async def silent_holders(self, before: float) -> list[str]:
        return [row[0] for row in await self._all(SILENT_HOLDERS, {"before": before})]

    # Reconciliation (ops/reconcile.py)

    async def upstream_cost_by_day(self, since: str, until: str) -> list[tuple[str, str, int]]:
        """What went upstream, per day and model, in nano-dollars: every row but the cache's
        answers; a response's image part under its image model, its text part under its
        text model."""
        rows = await self._all(
            "SELECT day, model, SUM(COALESCE(image_cost_nanos, upstream_cost_nanos)) FROM ledger"
            " WHERE day >= :since AND day < :until AND model IS NOT NULL"
            " AND cache_status NOT IN ('hit', 'coalesced') GROUP BY day, model"
            " UNION ALL SELECT day, text_model, SUM(text_cost_nanos) FROM ledger"
            " WHERE day >= :since AND day < :until AND text_model IS NOT NULL"
            " AND cache_status NOT IN ('hit', 'coalesced') GROUP BY day, text_model",
            {"since": since, "until": until},
        )
        return [(row[0], row[1], int(row[2] or 0)) for row in rows]

    async def upstream_images_by_day(self, since: str, until: str) -> list[tuple[str, str, int]]:
        """Images upstream made, per day and image model (the cache's answers made none)."""
        rows = await self._all(
            "SELECT day, model, SUM(images) FROM ledger WHERE day >= :since AND day < :until"
            " AND model IS NOT NULL AND images > 0 AND cache_status NOT IN ('hit', 'coalesced')"
            " GROUP BY day, model",
            {"since": since, "until": until},
        )
        return [(row[0], row[1], int(row[2] or 0)) for row in rows]

    # The audit trail (admin/audit.py)

    async def add_audit(
        self,
        *,
        at: str,
        actor: str,
        action: str,
        target: str,
        before: str | None,
        after: str | None,
    ) -> None:
        await self._all(
            "INSERT INTO audit (at, actor, action, target, before, after)"
            " VALUES (:at, :actor, :action, :target, :before, :after)",
            {
                "at": at,
                "actor": actor,
                "action": action,
                "target": target,
                "before": before,
                "after": after,
            },
        )

    async def audit_entries(
        self, limit: int, action: str | None = None, target: str | None = None
    ) -> list[tuple[Any, ...]]:
        """The newest entries first: (id, at, actor, action, target, before, after)."""
        rows = await self._all(
            "SELECT id, at, actor, action, target, before, after FROM audit"
            " WHERE (CAST(:action AS TEXT) IS NULL OR action = :action)"
            " AND (CAST(:target AS TEXT) IS NULL OR target = :target)"
            " ORDER BY id DESC LIMIT :limit",
            {"action": action, "target": target, "limit": limit},
        )
        return [tuple(row) for row in rows]

    # Console sessions ended before their cookie expires

    async def end_console_session(self, session_id: str, until: float, now: float) -> None:
        await self._all(END_CONSOLE_SESSION, {"sid": session_id, "until": until})
        await self._all(FORGET_EXPIRED_SESSIONS, {"now": now})

    async def console_session_ended(self, session_id: str) -> bool:
        return bool(await self._all(CONSOLE_SESSION_ENDED, {"sid": session_id}))
