"""`GET /v1/gateway/key`: a key holder sees their own standing, with their key, through the SDK."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import openai
import pytest

from gateway.admin import accounts
from gateway.runtime.state import SERVICES
from gateway.settings import Settings
from tests.conftest import FakeUpstream
from tests.e2e.test_accounting import LOW, gateway_with_key


async def test_a_key_holder_sees_its_key_and_team_through_the_sdk(
    aiohttp_client: Any, fake_upstream: FakeUpstream, make_settings: Callable[..., Settings]
) -> None:
    client, secret, key_id = await gateway_with_key(
        aiohttp_client,
        make_settings(upstream_url=fake_upstream.url),
        budget_usd="5",
        budget_period="month",
        rpm=60,
        team_budget_usd="2",
        team_budget_period="day",
    )
    sdk = openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key=secret, max_retries=0)
    async with sdk:
        raw = await sdk.images.with_raw_response.generate(**LOW)
        cost = Decimal(raw.headers["x-gateway-cost-usd"])
        standing: Any = await sdk.get("/gateway/key", cast_to=object)
    key, team = standing["key"], standing["team"]
    assert (key["id"], key["budget_usd"], key["budget_period"], key["rpm"]) == (
        key_id,
        "5.00",
        "month",
        60,
    )
    assert Decimal(key["spent_usd"]) == cost == Decimal(team["spent_usd"])
    assert Decimal(key["remaining_usd"]) == Decimal(5) - cost
    assert Decimal(team["remaining_usd"]) == Decimal(2) - cost
    assert key["reserved_usd"] == team["reserved_usd"] == "0.00"
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date().isoformat()
    assert team["renews_at"] == f"{tomorrow}T00:00:00Z"
    assert key["renews_at"].endswith("-01T00:00:00Z")
    assert "key_hash" not in str(standing) and secret not in str(standing)


async def test_only_a_live_key_sees_anything(
    aiohttp_client: Any, fake_upstream: FakeUpstream, make_settings: Callable[..., Settings]
) -> None:
    client, secret, key_id = await gateway_with_key(
        aiohttp_client, make_settings(upstream_url=fake_upstream.url)
    )
    for headers in ({}, {"Authorization": "Bearer sk-gw-nope"}):
        response = await client.get("/v1/gateway/key", headers=headers)
        assert (response.status, (await response.json())["error"]["code"]) == (
            401,
            "invalid_api_key",
        )
    await accounts.revoke_key(client.app[SERVICES].store, key_id)
    sdk = openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key=secret, max_retries=0)
    async with sdk:
        with pytest.raises(openai.AuthenticationError):
            await sdk.get("/gateway/key", cast_to=object)
