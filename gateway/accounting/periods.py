"""UTC calendar budget periods: a request made at a moment counts in its day, week, month, total."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Periods:
    """The period keys of one moment: day `2026-11-21`, week `2026-11-16` (its Monday), month
    `2026-11`."""

    day: str
    week: str
    month: str

    @classmethod
    def at(cls, moment: dt.datetime) -> Periods:
        moment = moment.astimezone(dt.UTC)
        date = moment.date()
        monday = date - dt.timedelta(days=date.weekday())
        return cls(date.isoformat(), monday.isoformat(), date.isoformat()[:7])

    def key(self, budget_period: str) -> str:
        """The spend counter a budget with this period reads: `total`, `day:…`, `week:…`, …"""
        if budget_period == "total":
            return "total"
        return f"{budget_period}:{getattr(self, budget_period)}"

    def sql_case(self) -> dict[str, str]:
        """The four counter keys, for a store to pick by budget period inside SQL."""
        return {"day": self.key("day"), "week": self.key("week"), "month": self.key("month")}


def next_reset(budget_period: str, moment: dt.datetime) -> dt.datetime | None:
    """When a budget with this period starts afresh after `moment` (None for `total`)."""
    moment = moment.astimezone(dt.UTC)
    start = dt.datetime.combine(moment.date(), dt.time(), tzinfo=dt.UTC)
    if budget_period == "day":
        return start + dt.timedelta(days=1)
    if budget_period == "week":
        return start + dt.timedelta(days=7 - moment.weekday())
    if budget_period == "month":
        year, month = (
            (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
        )
        return dt.datetime(year, month, 1, tzinfo=dt.UTC)
    return None
