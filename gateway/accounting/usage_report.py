"""Usage reports over the ledger: filters, grouping, and their JSON and CSV forms.

The admin API (`GET /admin/usage`) and the CLI (`gateway usage`) both build reports here.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from dataclasses import dataclass
from typing import Any

from gateway.errors import invalid_request
from gateway.money import nanos_to_usd
from gateway.store import Store
from gateway.store.base import USAGE_COLUMNS, UsageFilter

GROUPS = (
    "team",
    "key",
    "model",
    "endpoint",
    "day",
    "hour",
    "outcome",
    "cache",
    "batch",
    "user",
)  # and tag:<key>, one row per value of that tag
TAG_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# All but cost, saved and upstream cost, which are shown in USD.
COUNT_COLUMNS = USAGE_COLUMNS[:-3]
# Money, in USD: what the team was charged (its price multiplier applied), what the cache
# saved, what upstream charged, and the margin between the first and the last.
MONEY_COLUMNS = ("cost_usd", "saved_usd", "upstream_cost_usd", "margin_usd")


@dataclass(frozen=True)
class Report:
    group_by: str
    rows: list[dict[str, Any]]  # money as decimal strings
    total: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"group_by": self.group_by, "data": self.rows, "total": self.total}

    def as_csv(self) -> str:
        out = io.StringIO()
        columns = [self.group_by, *COUNT_COLUMNS, *MONEY_COLUMNS]
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return out.getvalue()


def parse_time(value: str | None, name: str) -> str | None:
    """An ISO 8601 date or date-time, as the ledger's UTC timestamp text (for comparison)."""
    if value is None or value == "":
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise invalid_request(
            f"'{name}' must be an ISO 8601 date or date-time, like 2026-11-01 or"
            " 2026-11-01T12:00:00Z.",
            code="invalid_value",
            param=name,
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds")


async def usage_report(
    store: Store,
    *,
    team: str | None = None,
    key: str | None = None,
    model: str | None = None,
    since: str | None = None,
    until: str | None = None,
    group_by: str = "team",
    tag: str | None = None,
    user: str | None = None,
) -> Report:
    """Sums of the ledger's rows that match every filter given, one row per group. `tag` is
    `key:value`; `group_by` may be `tag:key`."""
    tag_group = group_by.startswith("tag:") and TAG_KEY.match(group_by[4:]) is not None
    if group_by not in GROUPS and not tag_group:
        raise invalid_request(
            f"'group_by' must be one of {', '.join(GROUPS)}, or tag:KEY.",
            code="invalid_value",
            param="group_by",
        )
    wanted_tag = None
    if tag is not None:
        tag_key, _, tag_value = tag.partition(":")
        if not TAG_KEY.match(tag_key) or not tag_value:
            raise invalid_request("'tag' must be KEY:VALUE.", code="invalid_value", param="tag")
        wanted_tag = (tag_key, tag_value)
    if key is not None and await store.get_key(key) is None:
        raise invalid_request(f"No key with id {key!r}.", code="invalid_value", param="key")
    team_id = None
    if team is not None:
        record = await store.get_team(team)
        if record is None:
            raise invalid_request(f"No team named {team!r}.", code="invalid_value", param="team")
        team_id = record.id
    where = UsageFilter(
        team_id=team_id,
        key_id=key,
        model=model,
        since=parse_time(since, "since"),
        until=parse_time(until, "until"),
        tag=wanted_tag,
        end_user=user,
    )
    if where.since is not None and where.until is not None and where.since >= where.until:
        raise invalid_request(
            "'since' must come before 'until'.", code="invalid_value", param="until"
        )
    raw = await store.usage(where, group_by)
    rows = [_money_view(row, group_by) for row in raw]
    total: dict[str, Any] = {column: sum(row[column] for row in raw) for column in COUNT_COLUMNS}
    total.update(_money({c: sum(row[c] for row in raw) for c in USAGE_COLUMNS[-3:]}))
    return Report(group_by, rows, total)


def _money(sums: dict[str, int]) -> dict[str, str]:
    return {
        "cost_usd": nanos_to_usd(sums["cost_nanos"]),
        "saved_usd": nanos_to_usd(sums["saved_nanos"]),
        "upstream_cost_usd": nanos_to_usd(sums["upstream_cost_nanos"]),
        "margin_usd": nanos_to_usd(sums["cost_nanos"] - sums["upstream_cost_nanos"]),
    }


def _money_view(row: dict[str, Any], group_by: str) -> dict[str, Any]:
    view = {group_by: row[group_by], **{column: row[column] for column in COUNT_COLUMNS}}
    return {**view, **_money(row)}
