"""The overview's figures (gateway/console/figures.py): the windows are UTC calendar ones, the
series have a point for every hour and day, and the sums are the usage report's."""

from __future__ import annotations

import datetime as dt

from gateway.accounting.usage_report import Report
from gateway.console.figures import Window, daily_series, hourly_series


def test_the_windows_are_utc_calendar_ones() -> None:
    window = Window.at(dt.datetime(2026, 12, 2, 21, 40, 5, tzinfo=dt.UTC))
    assert window.today == "2026-12-02T00:00:00+00:00"
    assert window.month == "2026-12-01T00:00:00+00:00"
    assert window.last_24h == "2026-12-01T22:00:00+00:00"  # 24 whole hours, this one included
    assert window.last_30d == "2026-11-03T00:00:00+00:00"


def test_every_hour_and_day_has_a_point_those_without_requests_at_zero() -> None:
    hourly = Report("hour", [{"hour": "2026-12-02T20", "cost_usd": "0.25"}], {})
    points = hourly_series(hourly, "2026-12-01T22:00:00+00:00")
    assert len(points) == 24 and points[0] == ("2026-12-01T22", "0")
    assert points[22] == ("2026-12-02T20", "0.25") and points[-1] == ("2026-12-02T21", "0")
    daily = Report("day", [{"day": "2026-11-03", "cost_usd": "1.5"}], {})
    days = daily_series(daily, "2026-11-03T00:00:00+00:00")
    assert len(days) == 30 and days[0] == ("2026-11-03", "1.5") and days[-1][0] == "2026-12-02"
