"""UTC calendar budget periods and when each renews."""

from __future__ import annotations

import datetime as dt

from gateway.accounting.periods import Periods, next_reset

UTC = dt.UTC


def test_a_moment_counts_in_its_utc_day_monday_week_and_month() -> None:
    # 23:30 on Sunday 2026-11-29 in New York is Monday 2026-11-30 in UTC.
    new_york = dt.timezone(dt.timedelta(hours=-5))
    periods = Periods.at(dt.datetime(2026, 11, 29, 23, 30, tzinfo=new_york))
    assert periods == Periods("2026-11-30", "2026-11-30", "2026-11")
    assert periods.key("week") == "week:2026-11-30" and periods.key("total") == "total"
    assert Periods.at(dt.datetime(2026, 12, 2, tzinfo=UTC)).week == "2026-11-30"


def test_budgets_renew_at_the_next_utc_period() -> None:
    moment = dt.datetime(2026, 12, 31, 22, 0, tzinfo=UTC)  # a Thursday
    assert next_reset("day", moment) == dt.datetime(2027, 1, 1, tzinfo=UTC)
    assert next_reset("week", moment) == dt.datetime(2027, 1, 4, tzinfo=UTC)
    assert next_reset("month", moment) == dt.datetime(2027, 1, 1, tzinfo=UTC)
    assert next_reset("total", moment) is None
    monday = dt.datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
    assert next_reset("week", monday) == dt.datetime(2026, 12, 7, tzinfo=UTC)
