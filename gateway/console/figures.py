"""What the console's overview shows, read through the usage report the admin API and the CLI
give (gateway/accounting/usage_report.py), so the figures here are theirs for the same filters.

Times are UTC, as budget periods are: "today" starts at midnight UTC, "this month" on the 1st.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gateway.accounting.usage_report import Report, usage_report
from gateway.console.side_by_side import side_by_side
from gateway.outcome import CacheStatus
from gateway.store import Store


@dataclass(frozen=True)
class Window:
    """The overview's reference times, all UTC, each as `since=` takes it."""

    today: str
    month: str
    last_24h: str
    last_30d: str

    @classmethod
    def at(cls, now: dt.datetime) -> Window:
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        hour = now.replace(minute=0, second=0, microsecond=0)
        return cls(
            today=midnight.isoformat(),
            month=midnight.replace(day=1).isoformat(),
            last_24h=(hour - dt.timedelta(hours=23)).isoformat(),
            last_30d=(midnight - dt.timedelta(days=29)).isoformat(),
        )


def hourly_series(report: Report, since: str) -> list[tuple[str, str]]:
    """24 (hour, cost) points from an hourly report, hours without a row at 0."""
    start = dt.datetime.fromisoformat(since)
    costs = {row["hour"]: row["cost_usd"] for row in report.rows}
    hours = [(start + dt.timedelta(hours=i)).strftime("%Y-%m-%dT%H") for i in range(24)]
    return [(hour, costs.get(hour, "0")) for hour in hours]


def daily_series(report: Report, since: str) -> list[tuple[str, str]]:
    """30 (day, cost) points from a daily report, days without a row at 0."""
    start = dt.date.fromisoformat(since[:10])
    costs = {row["day"]: row["cost_usd"] for row in report.rows}
    days = [(start + dt.timedelta(days=i)).isoformat() for i in range(30)]
    return [(day, costs.get(day, "0")) for day in days]


async def overview(store: Store, now: dt.datetime) -> dict[str, Any]:
    """Spend today and this month (by team and by model), cost per hour over the last 24 hours
    and per day over the last 30 days, this month's cache answers and savings, and refusals by
    reason."""
    window = Window.at(now)
    (
        today_by_team, month_by_team, today_by_model, month_by_model,
        hourly, daily, by_cache, by_outcome,
    ) = await side_by_side([
        usage_report(store, since=window.today, group_by="team"),
        usage_report(store, since=window.month, group_by="team"),
        usage_report(store, since=window.today, group_by="model"),
        usage_report(store, since=window.month, group_by="model"),
        usage_report(store, since=window.last_24h, group_by="hour"),
        usage_report(store, since=window.last_30d, group_by="day"),
        usage_report(store, since=window.month, group_by="cache"),
        usage_report(store, since=window.month, group_by="outcome"),
    ])  # fmt: skip
    served = {row["cache"]: row["requests"] for row in by_cache.rows}
    from_cache = sum(n for status, n in served.items() if CacheStatus(status).served_by_cache)
    asked = sum(n for status, n in served.items() if status != CacheStatus.BYPASS.value)
    return {
        "window": window,
        "today": today_by_team.total,
        "month": month_by_team.total,
        "today_by_team": today_by_team.rows,
        "month_by_team": month_by_team.rows,
        "today_by_model": today_by_model.rows,
        "month_by_model": month_by_model.rows,
        "hourly": hourly_series(hourly, window.last_24h),
        "daily": daily_series(daily, window.last_30d),
        "cache_answers": from_cache,
        "cache_lookups": asked,
        "hit_ratio": (Decimal(from_cache) / asked) if asked else None,
        "saved_usd": month_by_team.total["saved_usd"],
        "refusals": [
            (row["outcome"], row["requests"]) for row in by_outcome.rows if row["refused"]
        ],
    }
