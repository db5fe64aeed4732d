"""Budget alerts' records, the same SQL on both engines: webhooks, the outbox of events, and one
delivery per event and webhook.

What holds: an event is queued once per `dedupe` (its scope, period and threshold), however many
requests or replicas cross it; a delivery is leased by one attempt at a time; the outbox is in
the store, so it survives restarts and any replica delivers it.
"""

from __future__ import annotations

from typing import Any

_WEBHOOK = "id, url, events, secret, created_at"
_DELIVERY = (
    "d.event_id, d.webhook_id, d.status, d.attempts, d.next_at, d.last_status, d.last_error,"
    " d.delivered_at, e.type, e.created_at"
)


class WebhookSql:
    """The Store protocol's webhook methods (base.py); each store supplies `_one` and `_all`."""

    async def _one(self, sql: str, params: dict[str, Any]) -> Any:
        raise NotImplementedError

    async def _all(self, sql: str, params: dict[str, Any]) -> list[Any]:
        raise NotImplementedError

    async def add_webhook(
        self, webhook_id: str, url: str, events: str | None, secret: str, created_at: str
    ) -> None:
        await self._all(
            f"INSERT INTO webhooks ({_WEBHOOK}) VALUES (:id, :url, :events, :secret, :at)",
            {"id": webhook_id, "url": url, "events": events, "secret": secret, "at": created_at},
        )

    async def list_webhooks(self) -> list[tuple[Any, ...]]:
        """(id, url, events, secret, created_at) of each live webhook, oldest first."""
        rows = await self._all(
            f"SELECT {_WEBHOOK} FROM webhooks WHERE deleted_at IS NULL ORDER BY created_at, id",
            {},
        )
        return [tuple(row) for row in rows]

    async def delete_webhook(self, webhook_id: str, now: str) -> bool:
        rows = await self._all(
            "UPDATE webhooks SET deleted_at = :now WHERE id = :id AND deleted_at IS NULL"
            " RETURNING id",
            {"id": webhook_id, "now": now},
        )
        return bool(rows)

    async def queue_event(
        self, event_id: str, kind: str, body: str, dedupe: str, now: float
    ) -> bool:
        """Queue the event for every live webhook that takes its type, unless one with the same
        `dedupe` was queued before; whether it was queued now."""
        rows = await self._all(
            "INSERT INTO webhook_events (id, type, body, dedupe, created_at)"
            " VALUES (:id, :type, :body, :dedupe, :now) ON CONFLICT (dedupe) DO NOTHING"
            " RETURNING id",
            {"id": event_id, "type": kind, "body": body, "dedupe": dedupe, "now": now},
        )
        if not rows:
            return False
        for webhook_id, _url, events, _secret, _at in await self.list_webhooks():
            if events is None or f'"{kind}"' in events:
                await self._all(
                    "INSERT INTO webhook_deliveries (event_id, webhook_id, status, next_at)"
                    " VALUES (:event, :webhook, 'pending', :now)",
                    {"event": event_id, "webhook": webhook_id, "now": now},
                )
        return True

    async def due_deliveries(self, now: float, limit: int) -> list[tuple[str, str]]:
        rows = await self._all(
            "SELECT event_id, webhook_id FROM webhook_deliveries WHERE status = 'pending'"
            " AND next_at <= :now AND lease_until < :now ORDER BY next_at LIMIT :limit",
            {"now": now, "limit": limit},
        )
        return [(row[0], row[1]) for row in rows]

    async def lease_delivery(
        self, event_id: str, webhook_id: str, owner: str, now: float, lease_s: float
    ) -> tuple[Any, ...] | None:
        """The delivery's (url, secret, body, event created_at, attempts) if this attempt got
        it; None when another has it, or it is no longer due."""
        rows = await self._all(
            "UPDATE webhook_deliveries SET lease_owner = :owner, lease_until = :until"
            " WHERE event_id = :event AND webhook_id = :webhook AND status = 'pending'"
            " AND lease_until < :now RETURNING attempts",
            {
                "event": event_id,
                "webhook": webhook_id,
                "owner": owner,
                "now": now,
                "until": now + lease_s,
            },
        )
        if not rows:
            return None
        found = await self._one(
            "SELECT w.url, w.secret, e.body, e.created_at FROM webhooks w, webhook_events e"
            " WHERE w.id = :webhook AND e.id = :event",
            {"event": event_id, "webhook": webhook_id},
        )
        return None if found is None else (*tuple(found), rows[0][0])

    async def end_attempt(
        self,
        event_id: str,
        webhook_id: str,
        *,
        status: str,
        attempts: int,
        next_at: float,
        last_status: int | None,
        last_error: str | None,
        delivered_at: float | None,
    ) -> None:
        await self._all(
            "UPDATE webhook_deliveries SET status = :status, attempts = :attempts,"
            " next_at = :next_at, last_status = :last_status, last_error = :last_error,"
            " delivered_at = :delivered_at, lease_owner = NULL, lease_until = 0"
            " WHERE event_id = :event AND webhook_id = :webhook",
            {
                "event": event_id,
                "webhook": webhook_id,
                "status": status,
                "attempts": attempts,
                "next_at": next_at,
                "last_status": last_status,
                "last_error": last_error,
                "delivered_at": delivered_at,
            },
        )

    async def deliveries(self, webhook_id: str, limit: int) -> list[tuple[Any, ...]]:
        """The webhook's deliveries, newest first: (event_id, webhook_id, status, attempts,
        next_at, last_status, last_error, delivered_at, type, event created_at)."""
        rows = await self._all(
            f"SELECT {_DELIVERY} FROM webhook_deliveries d JOIN webhook_events e"
            " ON e.id = d.event_id WHERE d.webhook_id = :webhook"
            " ORDER BY e.created_at DESC LIMIT :limit",
            {"webhook": webhook_id, "limit": limit},
        )
        return [tuple(row) for row in rows]
