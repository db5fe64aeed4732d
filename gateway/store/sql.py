"""SQL both stores speak the same way (SQLite and PostgreSQL), with `:name` placeholders: the
columns a team and a key are read with, a budget's spent and held amounts, the spend of a scope,
the usage report's sums and filters. Each store keeps only what its engine does differently."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from gateway.outcome import sql_refused
from gateway.store.base import USAGE_COLUMNS, LedgerRow, UsageFilter

TEAM_COLUMNS = (
    "id, name, budget_nanos, budget_period, rpm, ipm, created_at, policy, alert_thresholds,"
    " price_multiplier"
)
KEY_COLUMNS = (
    "k.id, k.team_id, t.name, k.name, k.prefix, k.budget_nanos, k.budget_period, k.rpm, k.ipm,"
    " k.created_at, k.revoked_at, k.policy, k.alert_thresholds"
)
KEY_FIELDS = 13  # the columns of KEY_COLUMNS: an ApiKey
# A key with its team's limits, by hash: ApiKey's columns, then Team's after its id and name.
KEY_AND_TEAM = (
    f"SELECT {KEY_COLUMNS}, t.budget_nanos, t.budget_period, t.rpm, t.ipm, t.created_at,"
    " t.policy, t.alert_thresholds, t.price_multiplier"
    " FROM api_keys k JOIN teams t ON t.id = k.team_id WHERE k.key_hash = :hash"
)
LIMIT_FIELDS = frozenset(
    {
        "budget_nanos",
        "budget_period",
        "rpm",
        "ipm",
        "policy",
        "alert_thresholds",
        "price_multiplier",
    }
)
LEDGER_COLUMNS = tuple(LedgerRow.__dataclass_fields__)
ORPHAN_COLUMNS = "id, key_id, team_id, amount_nanos, created_at, request_id, endpoint, model"

# Settling work that outlives a request (a batch, a background response) is leased: to one
# owner at a time, until the lease runs out (its owner died) or the work is settled.
LEASE = (
    "UPDATE {table} SET lease_owner = :owner, lease_until = :until"
    " WHERE id = :id AND settled_at IS NULL"
    " AND (lease_owner IS NULL OR lease_owner = :owner OR lease_until < :now)"
    " RETURNING id"
)


def changes_sql(table: str, changes: dict[str, Any], allowed: frozenset[str]) -> str:
    """`UPDATE table SET …` of `changes` (only fields in `allowed`; TypeError for others)
    for the row `:row_id`."""
    unknown = set(changes) - allowed
    if unknown:
        raise TypeError(f"not a change {table} takes: {sorted(unknown)}")
    assignments = ", ".join(f"{name} = :{name}" for name in changes)
    return f"UPDATE {table} SET {assignments} WHERE id = :row_id"


# A ledger row's tags, one row each (indexed for reports); written again, nothing changes.
INSERT_TAG = (
    "INSERT INTO ledger_tags (request_id, key, value) VALUES (:request_id, :key, :value)"
    " ON CONFLICT (request_id, key) DO NOTHING"
)


def tag_rows(rows: list[LedgerRow]) -> list[dict[str, Any]]:
    """The ledger_tags rows of `rows` (those that have tags)."""
    found = []
    for row in rows:
        if row.tags:
            for key, value in json.loads(row.tags).items():
                found.append({"request_id": row.request_id, "key": key, "value": value})
    return found


# The spend counter of a budget's current period, and what requests in flight hold against it.
PERIOD_OF = (
    "CASE {table}.budget_period WHEN 'total' THEN 'total' WHEN 'day' THEN :day"
    " WHEN 'week' THEN :week ELSE :month END"
)
SPENT = (
    "COALESCE((SELECT spent_nanos FROM spend WHERE scope = '{scope}' AND scope_id = {scope_id}"
    f" AND period = {PERIOD_OF}), 0)"
)
RESERVED = (
    "COALESCE((SELECT SUM(amount_nanos) FROM reservations"
    " WHERE {column} = {value} AND expires_at > :now), 0)"
)
SPEND = {
    "team": f"""
SELECT t.budget_nanos, t.budget_period,
       {SPENT.format(scope="team", scope_id="CAST(:id AS TEXT)", table="t")},
       {RESERVED.format(column="team_id", value="CAST(:id AS BIGINT)")}
FROM teams t WHERE t.id = CAST(:id AS BIGINT)""",
    "key": f"""
SELECT k.budget_nanos, k.budget_period,
       {SPENT.format(scope="key", scope_id=":id", table="k")},
       {RESERVED.format(column="key_id", value=":id")}
FROM api_keys k WHERE k.id = :id""",
}

# The usage report reads `ledger` or, over whole days, its summary `usage_daily` (migration
# 0010), both as `l`: the summary has the ledger's grouping columns but `hour`, and its sums.
_GROUPS = {
    "team": "t.name",
    "key": "l.key_id",
    "model": "COALESCE(NULLIF(l.model, ''), '(none)')",  # the summary's '' is the ledger's NULL
    "day": "l.day",
    "hour": "SUBSTR(l.created_at, 1, 13)",  # ISO text: '2026-12-02T21'
    "outcome": "l.outcome",
    "cache": "l.cache_status",
    "endpoint": "l.endpoint",  # generations, edits, variations, responses
    "user": "COALESCE(l.end_user, '(none)')",  # the body's `user`
    "batch": "COALESCE(l.batch_id, '(online)')",  # a Batch API line's batch; online requests
}
_SUMMED = USAGE_COLUMNS[2:]  # what a row adds up: images, tokens, cost, saved
_LEDGER_SUMS = ", ".join(
    [
        "COUNT(*) AS requests",
        f"SUM(CASE WHEN {sql_refused('l.outcome')} THEN 1 ELSE 0 END) AS refused",
        *(f"SUM(l.{column}) AS {column}" for column in _SUMMED),
    ]
)
_DAILY_SUMS = ", ".join(
    [
        "SUM(l.requests) AS requests",
        f"SUM(CASE WHEN {sql_refused('l.outcome')} THEN l.requests ELSE 0 END) AS refused",
        *(f"SUM(l.{column}) AS {column}" for column in _SUMMED),
    ]
)
DAILY_KEY = "day, team_id, key_id, model, outcome, cache_status"
# The summary as the ledger's rows make it (a copy's target rebuilds it so).
SUM_LEDGER_BY_DAY = (
    f"INSERT INTO usage_daily ({DAILY_KEY}, requests, {', '.join(_SUMMED)})"
    " SELECT day, team_id, key_id, COALESCE(model, ''), outcome, cache_status, COUNT(*),"
    f" {', '.join(f'SUM({column})' for column in _SUMMED)} FROM ledger"
    " GROUP BY day, team_id, key_id, COALESCE(model, ''), outcome, cache_status"
)
# What one ledger row, `row`, adds to its day's summary row.
ADD_TO_DAILY = (
    f"INSERT INTO usage_daily ({DAILY_KEY}, requests, {', '.join(_SUMMED)})"
    " SELECT row.day, row.team_id, row.key_id, COALESCE(row.model, ''), row.outcome,"
    f" row.cache_status, 1, {', '.join(f'row.{column}' for column in _SUMMED)} FROM row"
    f" ON CONFLICT ({DAILY_KEY}) DO UPDATE SET requests = usage_daily.requests + 1, "
    + ", ".join(f"{c} = usage_daily.{c} + excluded.{c}" for c in _SUMMED)
)
_MIDNIGHT = "T00:00:00.000+00:00"  # how parse_time writes the start of a day


def _whole_days(where: UsageFilter, group_by: str) -> bool:
    """Whether the daily summary answers: no hours, batches, endpoints, users nor tags asked for
    (it has none of them), and each bound at a midnight."""
    if group_by in ("hour", "batch", "endpoint", "user") or group_by.startswith("tag:"):
        return False
    if where.tag is not None or where.end_user is not None:
        return False
    return all(bound is None or bound.endswith(_MIDNIGHT) for bound in (where.since, where.until))


def now_text() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def limit_values(limits: dict[str, Any]) -> dict[str, Any]:
    """A team's or key's limits, every one named (unset: none); TypeError for an unknown one."""
    unknown = set(limits) - LIMIT_FIELDS
    if unknown:
        raise TypeError(f"unknown limit fields: {sorted(unknown)}")
    values = {
        "budget_nanos": None,
        "budget_period": "total",
        "rpm": None,
        "ipm": None,
        "policy": None,
        "alert_thresholds": None,
        "price_multiplier": None,
    }
    values.update(limits)
    return values


def usage_query(where: UsageFilter, group_by: str) -> tuple[str, dict[str, Any]]:
    """The usage report's statement and its parameters: over the daily summary when the filter
    covers whole days (the same sums, from far fewer rows), over the ledger otherwise. A tag
    filter or grouping reads the indexed ledger_tags."""
    daily = _whole_days(where, group_by)
    since, until = (
        ("l.day >= :since", "l.day < :until")
        if daily
        else ("l.created_at >= :since", "l.created_at < :until")
    )
    conditions, params = [], {}
    for column, value in (
        ("l.team_id = :team_id", where.team_id),
        ("l.key_id = :key_id", where.key_id),
        ("l.model = :model", where.model),
        ("l.end_user = :end_user", where.end_user),
        (since, where.since[:10] if daily and where.since else where.since),
        (until, where.until[:10] if daily and where.until else where.until),
    ):
        if value is not None:
            conditions.append(column)
            params[column.split(":")[1]] = value
    if where.tag is not None:
        conditions.append(
            "l.request_id IN (SELECT request_id FROM ledger_tags"
            " WHERE key = :tag_key AND value = :tag_value)"
        )
        params["tag_key"], params["tag_value"] = where.tag
    where_sql = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    table, sums = ("usage_daily", _DAILY_SUMS) if daily else ("ledger", _LEDGER_SUMS)
    group, joined = _GROUPS.get(group_by, ""), ""
    if group_by.startswith("tag:"):
        group = "COALESCE(g.value, '(untagged)')"
        joined = " LEFT JOIN ledger_tags g ON g.request_id = l.request_id AND g.key = :group_tag"
        params["group_tag"] = group_by[4:]
    sql = (
        f"SELECT {group} AS grp, {sums} FROM {table} l"
        f" JOIN teams t ON t.id = l.team_id{joined} {where_sql} GROUP BY grp ORDER BY grp"
    )
    return sql, params


def usage_rows(rows: list[Any], group_by: str) -> list[dict[str, Any]]:
    return [
        {group_by: row[0], **{c: int(v) for c, v in zip(USAGE_COLUMNS, row[1:], strict=True)}}
        for row in rows
    ]


# A process says it is alive (and heartbeats unheard of for a day are forgotten).
HEARTBEAT = (
    "INSERT INTO heartbeats (owner, seen_at) VALUES (:owner, :now)"
    " ON CONFLICT (owner) DO UPDATE SET seen_at = excluded.seen_at"
)
FORGET_OLD_HEARTBEATS = "DELETE FROM heartbeats WHERE seen_at < :now - 86400"
# Owners of holds whose last heartbeat is older than :before (an owner that never wrote one,
# such as a process of an older version, is not among them).
SILENT_HOLDERS = (
    "SELECT DISTINCT r.owner FROM reservations r JOIN heartbeats h ON h.owner = r.owner"
    " WHERE h.seen_at < :before ORDER BY r.owner"
)

# Console sessions signed out early (gateway/console/session.py): remembered until they expire.
END_CONSOLE_SESSION = (
    "INSERT INTO console_sessions_ended (session_id, expires_at) VALUES (:sid, :until)"
    " ON CONFLICT (session_id) DO NOTHING"
)
FORGET_EXPIRED_SESSIONS = "DELETE FROM console_sessions_ended WHERE expires_at < :now"
CONSOLE_SESSION_ENDED = "SELECT 1 FROM console_sessions_ended WHERE session_id = :sid"
