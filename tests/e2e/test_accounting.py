"""Accounting end to end: exact costs in headers and ledger, budgets that hold under concurrency,
rate limits, restarts, refusals the SDK does not retry, and reports that add up."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest

from gateway.accounting.periods import Periods
from gateway.admin import accounts
from gateway.app import create_app
from gateway.runtime.server import reload_prices
from gateway.runtime.state import SERVICES
from gateway.settings import SHIPPED_PRICES, Settings
from tests.conftest import ADMIN_TOKEN, FakeUpstream, auth

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# gpt-image-1, quality low, 1024x1024, prompt "p": 272 image tokens x $40/1M = $0.01088, plus
# 1 text token x $5/1M = $0.000005 (the simulator counts ceil(1/4) = 1; the estimate counts the
# prompt's 1 byte as 1 token, so here estimate and cost agree exactly).
LOW: dict[str, Any] = {"model": "gpt-image-1", "prompt": "p", "quality": "low", "size": "1024x1024"}
LOW_NANOS = 10_885_000


async def gateway_with_key(
    aiohttp_client: Any, settings: Settings, **limits: Any
) -> tuple[Any, str, str]:
    client = await aiohttp_client(create_app(settings))
    store = client.app[SERVICES].store
    team_limits = {k.removeprefix("team_"): v for k, v in limits.items() if k.startswith("team_")}
    key_limits = {k: v for k, v in limits.items() if not k.startswith("team_")}
    await accounts.create_team(store, accounts.TeamCreate(name="t", **team_limits))
    issued = await accounts.create_key(store, accounts.KeyCreate(team="t", **key_limits))
    return client, issued.secret, issued.record.id


async def ledger(client: Any) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = await client.app[SERVICES].store._all(
        "SELECT status, outcome, cost_nanos, estimate_nanos, image_output_tokens,"
        " text_input_tokens, price_version FROM ledger ORDER BY id"
    )
    return rows


async def test_a_response_carries_its_exact_cost_and_its_ledger_row(
    gateway: Any, key: str, fake_upstream: FakeUpstream
) -> None:
    body = {
        "model": "gpt-image-1",
        "prompt": "a sea otter",
        "quality": "medium",
        "size": "1536x1024",
    }
    response = await gateway.post("/v1/images/generations", json=body, headers=auth(key))
    assert response.status == 200
    # 1568 image tokens x $40/1M = $0.06272; "a sea otter" is 11 characters, ceil(11/4) = 3
    # text tokens x $5/1M = $0.000015; total $0.062735.
    assert response.headers["x-gateway-cost-usd"] == "0.062735"
    (row,) = await ledger(gateway)
    assert row[:3] == (200, "ok", 62_735_000)
    assert row[4:] == (1568, 3, "2026-12-06")
    assert row[3] >= row[2]  # the estimate was an upper bound


async def test_a_stream_ends_with_its_cost_as_an_sse_comment(gateway: Any, key: str) -> None:
    response = await gateway.post(
        "/v1/images/generations",
        json={**LOW, "stream": True, "partial_images": 2},
        headers=auth(key),
    )
    text = await response.text()
    # 272 + 2 partial images x 100 = 472 tokens x $40/1M = $0.01888, + $0.000005; the comment
    # comes last, after the completed event
    completed_at = text.index("event: image_generation.completed")
    assert text.endswith("}\n\n: gateway-cost-usd=0.018885\n\n")
    assert text.index(": gateway-cost-usd=") > completed_at
    assert (await ledger(gateway))[0][2] == 18_885_000


async def test_budget_refusal_is_rate_limit_error_insufficient_quota_and_never_retried(
    aiohttp_client: Any, fake_upstream: FakeUpstream, make_settings: Callable[..., Settings]
) -> None:
    client, key, _ = await gateway_with_key(
        aiohttp_client, make_settings(upstream_url=fake_upstream.url), team_budget_usd="0.01"
    )
    sdk = openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key=key, max_retries=2)
    with pytest.raises(openai.RateLimitError) as caught:
        await sdk.images.generate(**LOW)
    assert caught.value.code == "insufficient_quota"
    assert caught.value.type == "insufficient_quota"
    assert caught.value.response.headers["x-should-retry"] == "false"
    # What happened, in words: the estimate, what is left of which budget, when it renews.
    message = caught.value.message
    assert "team 't' cannot pay for this request: it may cost up to $0.01" in message
    assert "$0.01 of its budget of $0.01 is left ($0.00 spent" in message
    assert "It does not renew" in message
    # ...and which of its fields would lower the estimate.
    assert message.endswith("The estimate is lower with a smaller `size`.")
    assert fake_upstream.requests == []
    # the SDK (max_retries=2) sent it once: one request, one ledger row
    assert [row[:3] for row in await ledger(client)] == [(429, "refused_budget", 0)]
    await sdk.close()


async def test_fifty_parallel_requests_against_a_budget_for_five(
    aiohttp_client: Any, fake_upstream: FakeUpstream, make_settings: Callable[..., Settings]
) -> None:
    budget = 5 * LOW_NANOS  # $0.054425
    client, key, _ = await gateway_with_key(
        aiohttp_client,
        make_settings(upstream_url=fake_upstream.url),
        team_budget_usd=str(Decimal(budget) / 10**9),
    )
    responses = await asyncio.gather(
        *(client.post("/v1/images/generations", json=LOW, headers=auth(key)) for _ in range(50))
    )
    statuses = sorted(r.status for r in responses)
    assert statuses == [200] * 5 + [429] * 45
    assert len(fake_upstream.requests) == 5
    rows = await ledger(client)
    assert len(rows) == 50
    assert sum(row[2] for row in rows) == budget
    team = await client.app[SERVICES].store.spend(
        "team", "1", Periods.at(dt.datetime.now(dt.UTC)), time.time()
    )
    assert (team.spent_nanos, team.reserved_nanos, team.remaining_nanos) == (budget, 0, 0)
    charged = sum(Decimal(r.headers["x-gateway-cost-usd"]) for r in responses)
    assert charged == Decimal(budget) / 10**9


async def test_spend_stays_within_one_requests_overrun_when_estimates_fall_short(
    aiohttp_client: Any, fake_upstream: FakeUpstream, make_settings: Callable[..., Settings]
) -> None:
    # With quality "auto" the estimate takes the dearest option (high), the simulator produces
    # medium: estimates exceed actual costs, so the bound is spend <= budget.
    budget_nanos = 1_000_000_000 // 4
    client, key, _ = await gateway_with_key(
        aiohttp_client,
        make_settings(upstream_url=fake_upstream.url),
        budget_usd="0.25",
    )
    body = {"model": "gpt-image-1", "prompt": "p", "quality": "auto", "size": "1024x1024"}
    responses = await asyncio.gather(
        *(client.post("/v1/images/generations", json=body, headers=auth(key)) for _ in range(30))
    )
    ok = [r for r in responses if r.status == 200]
    assert ok and len(ok) < 30
    spent = sum(row[2] for row in await ledger(client))
    assert spent <= budget_nanos


async def test_rate_limits_hold_under_parallel_load(
    aiohttp_client: Any, fake_upstream: FakeUpstream, make_settings: Callable[..., Settings]
) -> None:
    client, key, _ = await gateway_with_key(
        aiohttp_client, make_settings(upstream_url=fake_upstream.url), rpm=3, team_ipm=8
    )
    responses = await asyncio.gather(
        *(client.post("/v1/images/generations", json=LOW, headers=auth(key)) for _ in range(10))
    )
    refused = [r for r in responses if r.status == 429]
    assert sorted(r.status for r in responses) == [200] * 3 + [429] * 7
    for response in refused:
        error = (await response.json())["error"]
        assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
        assert 1 <= int(response.headers["retry-after"]) <= 60
        assert response.headers["x-ratelimit-limit-requests"] == "3"
        assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert len(fake_upstream.requests) == 3


async def test_images_per_minute_counts_n(
    aiohttp_client: Any, fake_upstream: FakeUpstream, make_settings: Callable[..., Settings]
) -> None:
    client, key, _ = await gateway_with_key(
        aiohttp_client, make_settings(upstream_url=fake_upstream.url), team_ipm=5
    )
    statuses = []
    for _ in range(3):
        response = await client.post(
            "/v1/images/generations", json={**LOW, "n": 2}, headers=auth(key)
        )
        statuses.append(response.status)
    assert statuses == [200, 200, 429]
    assert (await response.json())["error"]["type"] == "images"


async def test_patch_takes_effect_at_once(gateway: Any, key: str) -> None:
    await gateway.patch("/admin/teams/team-a", json={"budget_usd": "0.001"}, headers=ADMIN)
    refused = await gateway.post("/v1/images/generations", json=LOW, headers=auth(key))
    assert refused.status == 429
    await gateway.patch("/admin/teams/team-a", json={"budget_usd": None, "rpm": 1}, headers=ADMIN)
    first = await gateway.post("/v1/images/generations", json=LOW, headers=auth(key))
    second = await gateway.post("/v1/images/generations", json=LOW, headers=auth(key))
    assert (first.status, second.status) == (200, 429)


async def test_team_and_key_views_show_spent_reserved_remaining(gateway: Any, key: str) -> None:
    await gateway.patch("/admin/teams/team-a", json={"budget_usd": "1"}, headers=ADMIN)
    await gateway.post("/v1/images/generations", json=LOW, headers=auth(key))
    team = await (await gateway.get("/admin/teams/team-a", headers=ADMIN)).json()
    assert (team["spent_usd"], team["reserved_usd"], team["remaining_usd"]) == (
        "0.010885",
        "0.00",
        "0.989115",
    )
    keys = await (await gateway.get("/admin/keys?team=team-a", headers=ADMIN)).json()
    assert keys["data"][0]["spent_usd"] == "0.010885"
    assert keys["data"][0]["remaining_usd"] is None  # the key itself has no budget


async def test_restart_keeps_spend_and_charges_expired_reservations_as_orphans(
    aiohttp_client: Any, fake_upstream: FakeUpstream, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(upstream_url=fake_upstream.url)
    client, key, key_id = await gateway_with_key(aiohttp_client, settings, team_budget_usd="1")
    await client.post("/v1/images/generations", json=LOW, headers=auth(key))
    # A process that dies mid-request leaves its reservation behind, already past its expiry.
    periods = Periods.at(dt.datetime.now(dt.UTC))
    stale = await client.app[SERVICES].store.reserve(
        key_id=key_id,
        team_id=1,
        amount_nanos=500_000_000,
        periods=periods,
        now=time.time() - 3600,
        ttl_s=60,
    )
    assert stale is not None
    await client.close()

    again = await aiohttp_client(create_app(settings))  # same data dir: a restart
    store = again.app[SERVICES].store
    assert await store._all("SELECT id FROM reservations") == []
    team = await store.spend("team", "1", periods, time.time())
    # The hold whose request never settled is charged its estimate: spend never under-counts.
    assert (team.spent_nanos, team.reserved_nanos) == (LOW_NANOS + 500_000_000, 0)
    rows = await ledger(again)
    assert [row[1] for row in rows] == ["ok", "orphaned"]
    assert rows[1][2] == rows[1][3] == 500_000_000


async def test_unpriced_models_pass_only_when_the_config_allows_and_cost_zero(
    aiohttp_client: Any, fake_upstream: FakeUpstream, make_settings: Callable[..., Settings]
) -> None:
    client, key, _ = await gateway_with_key(
        aiohttp_client,
        make_settings(upstream_url=fake_upstream.url, allow_unpriced_models=True),
    )
    response = await client.post(
        "/v1/images/generations", json={"model": "gpt-image-9", "prompt": "p"}, headers=auth(key)
    )
    assert response.status == 200 and response.headers["x-gateway-cost-usd"] == "0.00"
    rows = await client.app[SERVICES].store._all(
        "SELECT model, cost_nanos, price_version FROM ledger"
    )
    assert rows == [("gpt-image-9", 0, "2026-12-06")]


async def test_usage_report_sums_equal_the_ledger_and_the_headers(gateway: Any, key: str) -> None:
    charged = Decimal(0)
    for body in (
        LOW,
        {**LOW, "quality": "high", "n": 2},
        {"model": "dall-e-3", "prompt": "p", "size": "1792x1024", "quality": "hd"},
    ):
        response = await gateway.post("/v1/images/generations", json=body, headers=auth(key))
        assert response.status == 200
        charged += Decimal(response.headers["x-gateway-cost-usd"])
    stream = await gateway.post(
        "/v1/images/generations", json={**LOW, "stream": True}, headers=auth(key)
    )
    charged += Decimal((await stream.text()).rsplit("gateway-cost-usd=", 1)[1].strip())
    refused = await gateway.post("/v1/images/generations", json={"prompt": ""}, headers=auth(key))
    assert refused.status == 400

    report = await (await gateway.get("/admin/usage?group_by=model", headers=ADMIN)).json()
    # the refused request never named a model
    assert [row["model"] for row in report["data"]] == ["(none)", "dall-e-3", "gpt-image-1"]
    assert Decimal(report["total"]["cost_usd"]) == charged
    ledger_sum = sum(row[2] for row in await ledger(gateway))
    assert Decimal(ledger_sum) / 10**9 == charged
    # dall-e-3 hd 1792x1024 is $0.12 per image, by the per-image table
    assert next(r for r in report["data"] if r["model"] == "dall-e-3")["cost_usd"] == "0.12"
    assert report["total"]["requests"] == 5 and report["total"]["images"] == 5

    by_day = await gateway.get("/admin/usage?group_by=day&format=csv", headers=ADMIN)
    rows = list(csv.DictReader(io.StringIO(await by_day.text())))
    assert len(rows) == 1 and Decimal(rows[0]["cost_usd"]) == charged
    filtered = await gateway.get(
        "/admin/usage?group_by=key&model=dall-e-3&since=2020-01-01", headers=ADMIN
    )
    assert (await filtered.json())["total"]["cost_usd"] == "0.12"
    bad = await gateway.get("/admin/usage?group_by=planet", headers=ADMIN)
    assert bad.status == 400


async def test_sighup_reloads_prices_and_a_bad_file_changes_nothing(
    aiohttp_client: Any,
    fake_upstream: FakeUpstream,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    prices = tmp_path / "prices.toml"
    shipped = SHIPPED_PRICES.read_text()
    prices.write_text(shipped)
    client = await aiohttp_client(
        create_app(make_settings(upstream_url=fake_upstream.url, prices=prices))
    )
    book = client.app[SERVICES].prices
    prices.write_text(shipped.replace('version = "2026-12-06"', 'version = "2026-12-01"'))
    reload_prices([client.app])
    assert book.table.version == "2026-12-01"
    prices.write_text("this is not toml [")
    reload_prices([client.app])
    assert book.table.version == "2026-12-01"
