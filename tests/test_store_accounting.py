"""Reservations, the ledger trigger and spend counters: the store's accounting guarantees."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
from dataclasses import replace

from gateway.accounting.periods import Periods, next_reset
from gateway.store import Store
from gateway.store.base import LedgerRow, UsageFilter

NOW = dt.datetime(2026, 11, 21, 10, 0, tzinfo=dt.UTC)  # a Saturday
PERIODS = Periods.at(NOW)


_REQUEST_IDS = itertools.count(1)


def row(reservation_id: int | None, cost: int, **changes: object) -> LedgerRow:
    base = LedgerRow(
        request_id=f"req_{next(_REQUEST_IDS)}",  # one row per request
        created_at=NOW.isoformat(),
        day=PERIODS.day,
        week=PERIODS.week,
        month=PERIODS.month,
        key_id="key_a",
        team_id=1,
        endpoint="generations",
        model="gpt-image-1",
        size="1024x1024",
        quality="low",
        n=1,
        stream=False,
        status=200,
        outcome="ok",
        cache_status="bypass",
        text_input_tokens=3,
        cached_text_input_tokens=0,
        image_input_tokens=0,
        cached_image_input_tokens=0,
        image_output_tokens=272,
        text_output_tokens=0,
        images=1,
        estimate_nanos=cost,
        cost_nanos=cost,
        saved_nanos=0,
        latency_ms=1.0,
        upstream_request_id="req_up",
        price_version="2026-12-02",
        reservation_id=reservation_id,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


async def setup_budget(store: Store, team_budget: int | None, key_budget: int | None) -> None:
    await store.create_team("t", budget_nanos=team_budget, budget_period="day")
    await store.create_key(
        key_id="key_a", team_id=1, name=None, key_hash="h", prefix="p", budget_nanos=key_budget
    )


def test_periods_are_utc_calendar_periods() -> None:
    assert Periods("2026-11-21", "2026-11-16", "2026-11") == PERIODS
    assert PERIODS.key("week") == "week:2026-11-16" and PERIODS.key("total") == "total"
    assert next_reset("day", NOW) == dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
    assert next_reset("week", NOW) == dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
    assert next_reset("month", dt.datetime(2026, 12, 31, 23, tzinfo=dt.UTC)) == dt.datetime(
        2027, 1, 1, tzinfo=dt.UTC
    )
    assert next_reset("total", NOW) is None


async def test_reservations_never_pass_the_budget_under_concurrency(store: Store) -> None:
    await setup_budget(store, team_budget=500, key_budget=None)
    now = time.time()
    results = await asyncio.gather(
        *(
            store.reserve(
                key_id="key_a", team_id=1, amount_nanos=100, periods=PERIODS, now=now, ttl_s=60
            )
            for _ in range(50)
        )
    )
    assert sum(r is not None for r in results) == 5
    spend = await store.spend("team", "1", PERIODS, now)
    assert (spend.spent_nanos, spend.reserved_nanos, spend.remaining_nanos) == (0, 500, 0)


async def test_the_ledger_row_settles_its_reservation_and_counts_spend(store: Store) -> None:
    await setup_budget(store, team_budget=1000, key_budget=300)
    now = time.time()
    held = await store.reserve(
        key_id="key_a", team_id=1, amount_nanos=250, periods=PERIODS, now=now, ttl_s=60
    )
    assert held is not None
    # the key's budget (300) is the tighter one: 250 held + 100 more does not fit
    assert (
        await store.reserve(
            key_id="key_a", team_id=1, amount_nanos=100, periods=PERIODS, now=now, ttl_s=60
        )
        is None
    )
    await store.record(row(held, 120))
    key = await store.spend("key", "key_a", PERIODS, now)
    team = await store.spend("team", "1", PERIODS, now)
    assert (key.spent_nanos, key.reserved_nanos, key.remaining_nanos) == (120, 0, 180)
    assert (team.spent_nanos, team.reserved_nanos, team.budget_period) == (120, 0, "day")
    # spend is counted in every period, so a budget's period can change and stay right
    await store.update_team("t", budget_period="month")
    assert (await store.spend("team", "1", PERIODS, now)).spent_nanos == 120
    tomorrow = Periods.at(NOW + dt.timedelta(days=1))
    await store.update_team("t", budget_period="day")
    assert (await store.spend("team", "1", tomorrow, now)).spent_nanos == 0


async def test_expired_reservations_stop_counting_and_are_released(store: Store) -> None:
    await setup_budget(store, team_budget=100, key_budget=None)
    now = time.time()
    assert await store.reserve(
        key_id="key_a", team_id=1, amount_nanos=100, periods=PERIODS, now=now, ttl_s=10
    )
    later = now + 11
    assert (await store.spend("team", "1", PERIODS, later)).reserved_nanos == 0
    assert await store.reserve(
        key_id="key_a", team_id=1, amount_nanos=100, periods=PERIODS, now=later, ttl_s=10
    )
    assert await store.settle_orphans(later) == 1
    # The expired hold became a ledger row of its own, charged what it held.
    rows = await store._all("SELECT outcome, cost_nanos, estimate_nanos FROM ledger")  # type: ignore[attr-defined]
    assert [tuple(r) for r in rows] == [("orphaned", 100, 100)]
    # Charged in the periods of the day the hold was made (today).
    today = Periods.at(dt.datetime.now(dt.UTC))
    assert (await store.spend("team", "1", today, later)).spent_nanos == 100


async def test_usage_groups_and_filters(store: Store) -> None:
    await setup_budget(store, team_budget=None, key_budget=None)
    await store.record(row(None, 100))
    await store.record(row(None, 40, model="dall-e-3", image_output_tokens=0))
    await store.record(row(None, 0, outcome="refused_budget", status=429, images=0))
    by_model = await store.usage(UsageFilter(), "model")
    assert [(r["model"], r["requests"], r["cost_nanos"]) for r in by_model] == [
        ("dall-e-3", 1, 40),
        ("gpt-image-1", 2, 100),
    ]
    by_team = await store.usage(UsageFilter(model="gpt-image-1"), "team")
    assert by_team == [
        {
            "team": "t",
            "requests": 2,
            "refused": 1,
            "images": 1,
            "text_input_tokens": 6,
            "cached_text_input_tokens": 0,
            "image_input_tokens": 0,
            "cached_image_input_tokens": 0,
            "image_output_tokens": 544,
            "text_output_tokens": 0,
            "cost_nanos": 100,
            "saved_nanos": 0,
            "upstream_cost_nanos": 100,
        }
    ]
    assert await store.usage(UsageFilter(since="2027-01-01"), "day") == []
