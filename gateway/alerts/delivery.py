"""Delivering the outbox's events to their webhooks: signed, retried with back-off, never on a
request's path.

Each delivery is a POST of the event's JSON body with `X-Gateway-Signature: sha256=<hex
HMAC-SHA256 of the body with the webhook's secret>` and `X-Gateway-Event-Id` (the body's `id`,
the same on every retry). A 2xx delivers it; anything else (a status, a timeout, a refused
connection) tries again after GATEWAY_WEBHOOK_RETRY_S, doubling each time, at most 10 minutes
apart, until 24 hours after the event, when it is given up.

What holds: one attempt at a time per delivery (a lease in the store), from whichever replica
finds it due; a receiver that hangs costs only its own delivery's wait (each attempt is bounded
by GATEWAY_WEBHOOK_TIMEOUT_S and runs in a task of its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable

import aiohttp

from gateway.accounting.journal import this_process
from gateway.settings import Settings
from gateway.store import Store

log = logging.getLogger(__name__)
GIVE_UP_S = 24 * 3600.0
MOST_APART_S = 600.0
POLL_S = 0.25  # while there is work; idle, the wait doubles up to IDLE_POLL_S
IDLE_POLL_S = 2.0
AT_ONCE = 16


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def next_try(attempts: int, first_s: float) -> float:
    """Seconds until the next attempt after `attempts` failed ones: first_s, doubling, at most
    10 minutes."""
    return float(min(first_s * 2 ** (attempts - 1), MOST_APART_S))


class Deliverer:
    def __init__(
        self, settings: Settings, store: Store, count: Callable[[str], None] = lambda _: None
    ) -> None:
        """`count(result)` hears each attempt's result: delivered, failed, gave_up."""
        self.settings, self.store, self.count = settings, store, count
        self._session: aiohttp.ClientSession | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Until cancelled: find what is due, and deliver it in tasks of their own."""
        timeout = aiohttp.ClientTimeout(total=self.settings.webhook_timeout_s)
        self._session = aiohttp.ClientSession(timeout=timeout)
        try:
            wait = POLL_S
            while True:
                try:
                    found = await self.round()
                except Exception:
                    log.exception("webhook deliveries: a round failed; trying again shortly")
                    found = 0
                # Busy: look again soon. Idle: ask the store less and less often (one query
                # every IDLE_POLL_S at most, per process).
                wait = POLL_S if found or self._running else min(wait * 2, IDLE_POLL_S)
                await asyncio.sleep(wait)
        finally:
            for task in self._running:
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*self._running, return_exceptions=True)
            await self._session.close()

    async def round(self) -> int:
        """Start what is due (as many as there is room for); how many were started."""
        room = AT_ONCE - len(self._running)
        if room <= 0:
            return 0
        due = await self.store.due_deliveries(time.time(), room)
        for event_id, webhook_id in due:
            task = asyncio.create_task(self.attempt(event_id, webhook_id))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return len(due)

    async def attempt(self, event_id: str, webhook_id: str) -> None:
        store, now = self.store, time.time()
        owner = f"{this_process()}:{secrets.token_hex(4)}"
        lease_s = self.settings.webhook_timeout_s + 30
        leased = await store.lease_delivery(event_id, webhook_id, owner, now, lease_s)
        if leased is None:
            return
        url, secret, body, created_at, attempts = leased
        data = body.encode()
        headers = {
            "Content-Type": "application/json",
            "X-Gateway-Signature": signature(secret, data),
            "X-Gateway-Event-Id": event_id,
            "User-Agent": "images-gateway-webhooks",
        }
        status, error = None, None
        assert self._session is not None
        try:
            async with self._session.post(
                url, data=data, headers=headers, allow_redirects=False
            ) as answer:
                status = answer.status
                await answer.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = type(exc).__name__
        attempts += 1
        done = time.time()
        if status is not None and 200 <= status < 300:
            result, next_at = "delivered", done
        elif done - created_at >= GIVE_UP_S:
            result, next_at = "gave_up", done
        else:
            result = "failed"
            next_at = done + next_try(attempts, self.settings.webhook_retry_s)
        await store.end_attempt(
            event_id,
            webhook_id,
            status={"failed": "pending"}.get(result, result),
            attempts=attempts,
            next_at=next_at,
            last_status=status,
            last_error=error,
            delivered_at=done if result == "delivered" else None,
        )
        self.count(result)
        if result != "delivered":
            log.warning(
                "webhook %s: event %s not delivered (%s)", webhook_id, event_id, status or error
            )
