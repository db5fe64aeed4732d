"""Headers across the gateway: the client's key and account routing never reach upstream, and
upstream's account identity, rate limits and hop-by-hop headers never reach the client."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.admin import accounts
from gateway.app import create_app
from gateway.ops.logs import redact_secret
from gateway.proxy.upstream import client_response_headers, upstream_request_headers
from gateway.runtime.state import SERVICES
from gateway.settings import Settings
from tests.conftest import FakeUpstream, auth


def test_upstream_gets_the_gateway_s_key_and_nothing_of_the_client_s_account() -> None:
    sent = upstream_request_headers(
        {
            "Authorization": "Bearer sk-gw-client",
            "OpenAI-Organization": "org-client",
            "Cookie": "a=b",
            "Connection": "keep-alive, X-Secret-Hop",
            "X-Secret-Hop": "1",
            "Content-Type": "application/json",
            "X-Stainless-Lang": "python",
        },
        "sk-upstream",
    )
    assert sent["Authorization"] == "Bearer sk-upstream"
    assert set(sent) == {"Authorization", "Content-Type", "X-Stainless-Lang"}


def test_the_client_gets_no_upstream_account_limits_or_hops_and_no_key() -> None:
    redact_secret("sk-upstream-secret-value")
    received = CIMultiDictProxy(
        CIMultiDict(
            {
                "Content-Type": "application/json",
                "x-ratelimit-remaining-requests": "4999",
                "openai-organization": "org-gateway",
                "Set-Cookie": "s=1",
                "Transfer-Encoding": "chunked",
                "x-request-id": "req_1",
                "x-echo": "key sk-upstream-secret-value leaked",
            }
        )
    )
    relayed = client_response_headers(received)
    assert set(relayed) == {"Content-Type", "x-request-id", "x-echo"}
    assert "sk-upstream-secret-value" not in relayed["x-echo"]


async def test_requests_waiting_for_a_pooled_connection_are_counted_and_a_long_wait_logged(
    aiohttp_client: Any,
    make_settings: Callable[..., Settings],
    simulator: Callable[..., Awaitable[FakeUpstream]],
    make_key: Callable[..., Awaitable[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    upstream = await simulator(latency_ms=1300)
    settings = make_settings(upstream_url=upstream.url, upstream_max_connections=1)
    client = await aiohttp_client(create_app(settings))
    store = client.app[SERVICES].store
    await accounts.create_team(store, accounts.TeamCreate(name="t"))
    key = (await accounts.create_key(store, accounts.KeyCreate(team="t"))).secret
    body = {"model": "gpt-image-1.5", "prompt": "queue", "quality": "low"}
    calls = [
        asyncio.ensure_future(client.post("/v1/images/generations", json=body, headers=auth(key)))
        for _ in range(2)
    ]
    gauge = client.app[SERVICES].metrics.upstream_waiting
    for _ in range(100):
        if gauge._value.get() == 1:
            break
        await asyncio.sleep(0.02)
    assert gauge._value.get() == 1  # one holds the only connection, one waits for it
    assert [r.status for r in await asyncio.gather(*calls)] == [200, 200]
    assert gauge._value.get() == 0
    assert "waited" in caplog.text and "GATEWAY_UPSTREAM_MAX_CONNECTIONS" in caplog.text
