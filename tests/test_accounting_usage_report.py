"""Usage reports over the ledger (the admin API's and the CLI's), on a SQLite file: sums per
group within the filters, money as exact decimal strings, refusals of bad filters, and CSV."""

from __future__ import annotations

import pytest

from gateway.accounting.usage_report import parse_time, usage_report
from gateway.admin import accounts
from gateway.errors import GatewayError
from gateway.store import Store
from tests.test_store_accounting import row


async def test_the_report_sums_each_group_within_the_filters(store: Store) -> None:
    team = await accounts.create_team(store, accounts.TeamCreate(name="t"))
    for cost, model in ((1_000_000_001, "gpt-image-1"), (2, "gpt-image-1"), (7, "dall-e-3")):
        await store.record(row(None, cost, team_id=team.id, model=model))
    report = await usage_report(store, group_by="model")
    by_model = {line["model"]: line for line in report.rows}
    assert by_model["gpt-image-1"]["cost_usd"] == "1.000000003"
    assert by_model["gpt-image-1"]["requests"] == 2 and by_model["dall-e-3"]["requests"] == 1
    assert report.total["cost_usd"] == "1.00000001"
    only = await usage_report(store, team="t", model="dall-e-3", group_by="team")
    assert [line["cost_usd"] for line in only.rows] == ["0.000000007"]
    csv = report.as_csv().splitlines()
    assert csv[0].startswith("model,") and len(csv) == 3
    assert (await usage_report(store, since="2030-01-01")).rows == []


async def test_bad_filters_are_refused_plainly(store: Store) -> None:
    for call in (
        usage_report(store, group_by="colour"),
        usage_report(store, team="no-such-team"),
        usage_report(store, since="last tuesday"),
    ):
        with pytest.raises(GatewayError) as refused:
            await call
        assert refused.value.status == 400 and refused.value.param in ("group_by", "team", "since")
    assert parse_time("2026-11-01", "since") == "2026-11-01T00:00:00.000+00:00"
