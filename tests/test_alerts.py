"""Budget alerts' parts: thresholds read with their default, the signature a receiver checks,
the back-off between attempts, and events queued once per threshold per period."""

from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal
from typing import Any

from gateway.alerts.delivery import MOST_APART_S, next_try, signature
from gateway.alerts.thresholds import (
    DEFAULT_THRESHOLDS,
    BudgetChecks,
    check_budgets,
    thresholds_of,
)
from gateway.runtime.tasks import Tasks
from gateway.store import Store
from tests.factories import team_and_key
from tests.test_store_accounting import row


def test_thresholds_default_to_80_and_100_percent() -> None:
    assert thresholds_of(None) == DEFAULT_THRESHOLDS == (Decimal("0.8"), Decimal("1.0"))
    assert thresholds_of('["0.5", "0.25"]') == (Decimal("0.25"), Decimal("0.5"))


def test_the_signature_is_hmac_sha256_of_the_body() -> None:
    body = b'{"id":"evt_1"}'
    expected = hmac.new(b"secret", body, hashlib.sha256).hexdigest()
    assert signature("secret", body) == f"sha256={expected}"


def test_retries_double_from_the_first_wait_up_to_ten_minutes() -> None:
    assert [next_try(n, 2.0) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert next_try(20, 2.0) == MOST_APART_S


async def test_each_threshold_is_queued_once_per_period(store: Store) -> None:
    team_id, key_id = await team_and_key(store, budget_nanos=1_000_000)
    await store.add_webhook("wh_1", "http://example.com", None, "s" * 16, "now")
    await store.record(row(None, 850_000, team_id=team_id, key_id=key_id))
    key = await store.get_key(key_id)
    team = await store.get_team("design")
    assert key is not None and team is not None
    assert await check_budgets(store, key, team) == 1  # 0.8 of the team's budget
    assert await check_budgets(store, key, team) == 0  # again: nothing new
    await store.record(row(None, 200_000, team_id=team_id, key_id=key_id))
    assert await check_budgets(store, key, team) == 1  # now 1.0: exhausted
    (first, second) = await store.deliveries("wh_1", 10)
    kinds = {first[8], second[8]}
    assert kinds == {"budget.threshold", "budget.exhausted"}
    events = await store._all("SELECT body FROM webhook_events", {})  # type: ignore[attr-defined]
    assert {json.loads(e[0])["threshold"] for e in events} == {"0.8", "1.0"}


async def test_a_keys_checks_are_shared_while_one_waits_and_none_is_missed(store: Store) -> None:
    """Spends while a check waits share it; a spend once it has started gets its own, which
    sees that spend."""
    team_id, key_id = await team_and_key(store, budget_nanos=1_000_000)
    await store.add_webhook("wh_1", "http://example.com", None, "s" * 16, "now")
    key, team = await store.get_key(key_id), await store.get_team("design")
    assert key is not None and team is not None
    reads = []
    real_spend = store.spend

    async def counted_spend(*args: Any) -> Any:
        reads.append(args[0])
        return await real_spend(*args)

    store.spend = counted_spend  # type: ignore[method-assign, assignment]
    checks, tasks = BudgetChecks(delay_s=0.05), Tasks()
    await store.record(row(None, 500_000, team_id=team_id, key_id=key_id))
    for _ in range(5):
        checks.spent(store, tasks, key, team)
    await tasks.settle()
    assert reads == ["team"]  # one check for the five (the key has no budget of its own)
    assert await store.deliveries("wh_1", 10) == []
    await store.record(row(None, 400_000, team_id=team_id, key_id=key_id))
    checks.spent(store, tasks, key, team)
    await tasks.settle()
    assert len(await store.deliveries("wh_1", 10)) == 1  # 0.9 of the team's: the 0.8 event
