"""Crossing a budget's alert thresholds: after spend is recorded, each threshold of the key's and
the team's budgets that the period's spend has reached is queued as an event, once per threshold
per budget period (the outbox's `dedupe` keeps it once, across replicas too).

What holds: an event says `budget.threshold` (or `budget.exhausted` at 1.0 and above) with the
budget's figures as they stood; this runs off the request's path (a background task) and a
failure here costs an alert, never a request. A key's checks are coalesced (BudgetChecks): every
spend is followed by a check that starts after it, but a busy key's requests share one check per
CHECK_DELAY_S instead of reading its spend twice each.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import secrets
import time
from decimal import Decimal
from typing import Any

from gateway.accounting.periods import Periods
from gateway.money import nanos_to_usd
from gateway.proxy.flow import Flow
from gateway.runtime.tasks import Tasks
from gateway.store import ApiKey, Store, Team

log = logging.getLogger(__name__)
DEFAULT_THRESHOLDS = (Decimal("0.8"), Decimal("1.0"))
CHECK_DELAY_S = 0.1  # how long a key's check waits for more of its requests to end


def thresholds_of(text: str | None) -> tuple[Decimal, ...]:
    if not text:
        return DEFAULT_THRESHOLDS
    return tuple(sorted(Decimal(str(value)) for value in json.loads(text)))


def _period_key(period: str, periods: Periods) -> str:
    return {
        "day": f"day:{periods.day}",
        "week": f"week:{periods.week}",
        "month": f"month:{periods.month}",
    }.get(period, "total")


async def alert_on_spend(flow: Flow, error: BaseException | None) -> None:
    """An ending step: a request that spent, under a budget, has its budgets' thresholds
    checked in a background task (off the request's path)."""
    caller = flow.caller
    if caller is None or flow.result.cost_nanos <= 0 or flow.answer.pending:
        return
    if caller.key.budget_nanos is None and caller.team.budget_nanos is None:
        return
    services = flow.services
    services.budget_checks.spent(services.store, services.tasks, caller.key, caller.team)


class BudgetChecks:
    """One waiting check per key: a key whose requests end while its check waits to start
    shares that check (it reads the spend after them all); a request that ends once the check
    has started gets a new one. So no spend goes unchecked, and a busy key costs a check per
    `delay_s`, not two reads per request."""

    def __init__(self, delay_s: float = CHECK_DELAY_S) -> None:
        self.delay_s = delay_s
        self._waiting: dict[str, tuple[ApiKey, Team]] = {}

    def spent(self, store: Store, tasks: Tasks, key: ApiKey, team: Team) -> None:
        waiting = key.id in self._waiting
        self._waiting[key.id] = (key, team)  # the newest: its thresholds may have changed
        if not waiting:
            tasks.spawn(f"alerts {key.id}", self._check(store, key.id))

    async def _check(self, store: Store, key_id: str) -> None:
        await asyncio.sleep(self.delay_s)
        key, team = self._waiting.pop(key_id)
        try:
            await check_budgets(store, key, team)
        except Exception:
            log.exception("budget alerts for key %s could not be checked", key_id)


async def check_budgets(store: Store, key: ApiKey, team: Team) -> int:
    """Queue an event for every threshold the key's or the team's budget has reached in its
    current period (each once); how many were queued now."""
    now = dt.datetime.now(dt.UTC)
    periods = Periods.at(now)
    queued = 0
    scopes = (
        ("key", key.id, key.budget_nanos, key.budget_period, key.alert_thresholds),
        ("team", str(team.id), team.budget_nanos, team.budget_period, team.alert_thresholds),
    )
    for scope, scope_id, budget, period, thresholds in scopes:
        if not budget:
            continue
        spend = await store.spend(scope, scope_id, periods, now.timestamp())
        used = Decimal(spend.spent_nanos) / Decimal(budget)
        for threshold in thresholds_of(thresholds):
            if used < threshold:
                continue
            kind = "budget.exhausted" if threshold >= 1 else "budget.threshold"
            event_id = f"evt_{secrets.token_hex(12)}"
            body: dict[str, Any] = {
                "id": event_id,
                "type": kind,
                "created_at": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
                "team": team.name,
                "key_id": key.id if scope == "key" else None,
                "period": _period_key(period, periods),
                "budget_usd": nanos_to_usd(budget),
                "spent_usd": nanos_to_usd(spend.spent_nanos),
                "reserved_usd": nanos_to_usd(spend.reserved_nanos),
                "threshold": str(threshold),
            }
            dedupe = f"{scope}:{scope_id}:{body['period']}:{threshold}"
            queued += await store.queue_event(
                event_id, kind, json.dumps(body, separators=(",", ":")), dedupe, time.time()
            )
    return queued
