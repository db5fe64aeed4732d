"""quota: the budget refusal says what happened."""

from __future__ import annotations

import datetime as dt

from gateway.accounting.quota import budget_exhausted
from gateway.store.base import Spend


def test_a_daily_budget_refusal_says_the_estimate_what_is_left_and_the_renewal() -> None:
    now = dt.datetime(2026, 12, 2, 15, 30, tzinfo=dt.UTC)
    spend = Spend(budget_nanos=1_000_000, budget_period="day", spent_nanos=0, reserved_nanos=0)
    error = budget_exhausted("team", "design", spend, 12_500_000, now)
    assert error.status == 429 and error.headers["x-should-retry"] == "false"
    assert error.message == (
        "The team 'design' cannot pay for this request: it may cost up to $0.0125, and $0.001 of"
        " its daily budget of $0.001 is left ($0.00 spent, $0.00 held by requests in flight)."
        " The budget renews at 2026-12-03T00:00:00Z."
    )
    assert "dayly" not in error.message
