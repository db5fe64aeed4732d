"""Rate limits shared through a real Redis (GATEWAY_REDIS_URL), driven with the official SDK
against two gateways on one database, as two replicas: together they admit exactly what the
limit allows, all-or-nothing across key and team; and when Redis goes away requests keep
flowing, with limits counted per process, `/readyz` and `gateway_redis_up` saying so."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import openai
import pytest

from gateway.accounting.quota_redis import KEY_PREFIX
from gateway.admin import accounts
from gateway.app import create_app
from gateway.replicas.redis_link import PROBE_S
from gateway.runtime.state import SERVICES
from gateway.settings import Settings
from tests.conftest import ADMIN_TOKEN, FakeUpstream
from tests.e2e.test_cache import sdk_for
from tests.redis_server import RedisServer

# Starts the servers it tests itself (or needs no fixture's database): run once, not again on
# PostgreSQL.
pytestmark = pytest.mark.one_pass

REQUEST: dict[str, Any] = {"model": "gpt-image-1", "prompt": "a heron", "quality": "low"}


async def replicas(aiohttp_client: Any, settings: Settings, count: int = 2) -> list[Any]:
    return [await aiohttp_client(create_app(settings)) for _ in range(count)]


async def outcomes(calls: list[Any]) -> list[str]:
    results = await asyncio.gather(*calls, return_exceptions=True)
    names = []
    for result in results:
        if isinstance(result, openai.RateLimitError):
            names.append("429")
        elif isinstance(result, BaseException):
            raise result
        else:
            names.append("ok")
    return names


async def test_two_replicas_admit_exactly_the_limit_together(
    aiohttp_client: Any,
    fake_upstream: FakeUpstream,
    make_settings: Callable[..., Settings],
    redis_server: RedisServer,
) -> None:
    settings = make_settings(upstream_url=fake_upstream.url, redis_url=redis_server.url)
    gateways = await replicas(aiohttp_client, settings)
    store = gateways[0].app[SERVICES].store
    await accounts.create_team(store, accounts.TeamCreate(name="t", rpm=10))
    key = (await accounts.create_key(store, accounts.KeyCreate(team="t"))).secret
    sdks = [sdk_for(gateway, key) for gateway in gateways]
    results = await outcomes([sdks[i % 2].images.generate(**REQUEST) for i in range(40)])
    assert results.count("ok") == 10 and results.count("429") == 30
    assert len(fake_upstream.requests) == 10
    for sdk in sdks:
        await sdk.close()


async def test_a_refusal_by_one_limit_counts_in_none(
    aiohttp_client: Any,
    fake_upstream: FakeUpstream,
    make_settings: Callable[..., Settings],
    redis_server: RedisServer,
) -> None:
    settings = make_settings(upstream_url=fake_upstream.url, redis_url=redis_server.url)
    gateways = await replicas(aiohttp_client, settings)
    store = gateways[0].app[SERVICES].store
    team = await accounts.create_team(store, accounts.TeamCreate(name="t", ipm=100))
    key = (await accounts.create_key(store, accounts.KeyCreate(team="t", rpm=3))).secret
    sdks = [sdk_for(gateway, key) for gateway in gateways]
    raw = await sdks[0].images.with_raw_response.generate(**REQUEST, n=2)
    assert raw.headers["x-ratelimit-remaining-requests"] == "2"
    assert raw.headers["x-ratelimit-remaining-images"] == "98"
    results = await outcomes([sdks[i % 2].images.generate(**REQUEST, n=2) for i in range(5)])
    assert results.count("ok") == 2 and results.count("429") == 3
    redis = gateways[0].app[SERVICES].limiter.link.redis
    # Only the three admitted requests count against the team's images: 3 × 2.
    assert int(await redis.get(f"{KEY_PREFIX}team:{team.id}:images:total")) == 6
    for sdk in sdks:
        await sdk.close()


async def readyz(gateway: Any) -> dict[str, Any]:
    response = await gateway.get("/readyz")
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    return body


async def redis_up(gateway: Any) -> str:
    response = await gateway.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    line = next(
        line for line in (await response.text()).splitlines() if line.startswith("gateway_redis_up")
    )
    return str(line.split()[-1])


@pytest.mark.parametrize("on_failure", ["local", "open"])
async def test_without_redis_requests_flow_and_readyz_and_metrics_say_so(
    aiohttp_client: Any,
    fake_upstream: FakeUpstream,
    make_settings: Callable[..., Settings],
    redis_server: RedisServer,
    on_failure: str,
) -> None:
    settings = make_settings(
        upstream_url=fake_upstream.url,
        redis_url=redis_server.url,
        redis_limits_on_failure=on_failure,
    )
    (gateway,) = await replicas(aiohttp_client, settings, count=1)
    store = gateway.app[SERVICES].store
    await accounts.create_team(store, accounts.TeamCreate(name="t", rpm=2))
    sdk = sdk_for(gateway, (await accounts.create_key(store, accounts.KeyCreate(team="t"))).secret)
    await sdk.images.generate(**REQUEST)  # counted in Redis
    assert "degraded" not in await readyz(gateway) and await redis_up(gateway) == "1.0"

    redis_server.stop()
    results = await outcomes([sdk.images.generate(**REQUEST) for _ in range(3)])
    # local: this process counts anew (2 of 3); open: no limit at all.
    assert sorted(results) == (["429", "ok", "ok"] if on_failure == "local" else ["ok"] * 3)
    ready = await readyz(gateway)
    assert ready["status"] == "ready" and "redis unreachable" in ready["degraded"]["redis"]
    assert await redis_up(gateway) == "0.0"

    redis_server.start()  # same port, empty: the shared window starts over
    await asyncio.sleep(PROBE_S + 0.5)  # the link's probe finds it back
    results = await outcomes([sdk.images.generate(**REQUEST) for _ in range(3)])
    assert sorted(results) == ["429", "ok", "ok"]
    assert "degraded" not in await readyz(gateway) and await redis_up(gateway) == "1.0"
    await sdk.close()
