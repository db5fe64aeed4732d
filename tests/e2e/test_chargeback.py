"""Chargeback: a team with a price multiplier is charged upstream's cost times it, exactly; its
budget holds and counts what it is charged; `x-gateway-cost-usd` says it; the ledger keeps
upstream's cost beside it, and reports show both and the margin."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import openai

from gateway.accounting.periods import Periods
from gateway.runtime.state import SERVICES
from tests.conftest import ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def test_a_team_is_charged_its_multiple_and_reports_show_the_margin(gateway: Any) -> None:
    for name, multiplier in (("internal", "1.25"), ("at-cost", None)):
        body: dict[str, Any] = {"name": name}
        if multiplier:
            body["price_multiplier"] = multiplier
        assert (await gateway.post("/admin/teams", json=body, headers=ADMIN)).status == 201
    charged: dict[str, Decimal] = {}
    for team in ("internal", "at-cost"):
        key = await (await gateway.post("/admin/keys", json={"team": team}, headers=ADMIN)).json()
        sdk = openai.AsyncOpenAI(
            base_url=str(gateway.make_url("/v1")), api_key=key["key"], max_retries=0
        )
        raw = await sdk.images.with_raw_response.generate(
            model="gpt-image-1-mini", prompt="same picture", quality="low", size="1024x1024"
        )
        charged[team] = Decimal(raw.headers["x-gateway-cost-usd"])
        await sdk.close()
    # The same image upstream: the internal team pays 1.25 times, rounded half up to the nano.
    expected = (charged["at-cost"] * Decimal("1.25")).quantize(
        Decimal("0.000000001"), rounding=ROUND_HALF_UP
    )
    assert charged["internal"] == expected
    store: Any = gateway.app[SERVICES].store
    rows = await store._all(
        "SELECT t.name, l.cost_nanos, l.upstream_cost_nanos FROM ledger l"
        " JOIN teams t ON t.id = l.team_id",
        {},
    )
    by_team = {row[0]: (row[1], row[2]) for row in rows}
    assert by_team["internal"][1] == by_team["at-cost"][1] == by_team["at-cost"][0]
    assert Decimal(by_team["internal"][0]) / 10**9 == charged["internal"]
    team = await store.get_team("internal")
    now = dt.datetime.now(dt.UTC)
    spend = await store.spend("team", str(team.id), Periods.at(now), now.timestamp())
    assert spend.spent_nanos == by_team["internal"][0]  # the budget counts what is charged
    report = await (
        await gateway.get("/admin/usage", params={"group_by": "team"}, headers=ADMIN)
    ).json()
    row = {r["team"]: r for r in report["data"]}["internal"]
    assert Decimal(row["cost_usd"]) == charged["internal"]
    assert Decimal(row["upstream_cost_usd"]) == charged["at-cost"]
    assert Decimal(row["margin_usd"]) == charged["internal"] - charged["at-cost"]
    view = await (await gateway.get("/admin/teams/internal", headers=ADMIN)).json()
    assert view["price_multiplier"] == "1.25"
