"""Identical requests in flight on different replicas share one upstream call (gateway/cache/
remote.py): three gateways on one PostgreSQL and one Redis, a slow simulator upstream, the
official SDK. A stream follower on another replica gets every event as it arrives, and a leader
that vanishes leaves no follower hanging."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from typing import Any

import openai
import pytest
from aiohttp import web

from gateway import accounts
from gateway.app import create_app
from gateway.cache.remote import LEAD, LEAD_TTL_MS
from gateway.settings import Settings
from gateway.state import DETACHED, SERVICES
from simulator import SIMULATOR_STATE, SimulatorConfig, create_simulator_app
from tests.conftest import UPSTREAM_KEY, FakeUpstream
from tests.e2e.test_cache import stored
from tests.redis_server import RedisServer

REQUEST: dict[str, Any] = {"model": "gpt-image-1", "prompt": "a crane", "quality": "low"}


@pytest.fixture
async def slow_upstream(aiohttp_server: Any) -> FakeUpstream:
    """The simulator, taking 600 ms to answer and 250 ms between stream events."""
    config = SimulatorConfig(
        record=True, api_key=UPSTREAM_KEY, latency_ms=600, partial_interval_ms=250
    )
    app: web.Application = create_simulator_app(config)
    return FakeUpstream(await aiohttp_server(app), app[SIMULATOR_STATE])


async def three_replicas(
    aiohttp_client: Any,
    make_settings: Callable[..., Settings],
    upstream: FakeUpstream,
    pg_url: str,
    redis_url: str,
    tmp_path: Any,
) -> tuple[list[Any], list[openai.AsyncOpenAI]]:
    settings = make_settings(
        upstream_url=upstream.url, database_url=pg_url, redis_url=redis_url,
        cache_enabled=True, cache_store=tmp_path / "shared-cache",
    )  # fmt: skip
    gateways = [await aiohttp_client(create_app(settings)) for _ in range(3)]
    store = gateways[0].app[SERVICES].store
    await accounts.create_team(store, accounts.TeamCreate(name="t"))
    key = (await accounts.create_key(store, accounts.KeyCreate(team="t"))).secret
    sdks = [
        openai.AsyncOpenAI(base_url=str(g.make_url("/v1")), api_key=key, max_retries=0, timeout=30)
        for g in gateways
    ]
    return gateways, sdks


async def test_twenty_identical_requests_over_three_replicas_make_one_upstream_call(
    aiohttp_client: Any,
    make_settings: Callable[..., Settings],
    slow_upstream: FakeUpstream,
    pg_url: str,
    redis_server: RedisServer,
    tmp_path: Any,
) -> None:
    gateways, sdks = await three_replicas(
        aiohttp_client, make_settings, slow_upstream, pg_url, redis_server.url, tmp_path
    )
    raws = await asyncio.gather(
        *(sdks[i % 3].images.with_raw_response.generate(**REQUEST) for i in range(20))
    )
    assert len(slow_upstream.requests) == 1
    images = {base64.b64decode(raw.parse().data[0].b64_json or "") for raw in raws}
    assert len(images) == 1
    statuses = sorted(raw.headers["x-gateway-cache"] for raw in raws)
    assert statuses.count("miss") == 1 and set(statuses) <= {"miss", "coalesced", "hit"}
    costs = [raw.headers["x-gateway-cost-usd"] for raw in raws]
    assert sum(cost != "0.00" for cost in costs) == 1  # only the leader paid
    for gateway in gateways:
        while tasks := list(gateway.app[DETACHED]):
            await asyncio.wait(tasks)
    rows = await gateways[0].app[SERVICES].store._all("SELECT cache_status FROM ledger")
    assert len(rows) == 20  # every request has its row, on whichever replica it came
    for sdk in sdks:
        await sdk.close()


async def test_a_stream_follower_on_another_replica_gets_every_event_as_it_arrives(
    aiohttp_client: Any,
    make_settings: Callable[..., Settings],
    slow_upstream: FakeUpstream,
    pg_url: str,
    redis_server: RedisServer,
    tmp_path: Any,
) -> None:
    _, sdks = await three_replicas(
        aiohttp_client, make_settings, slow_upstream, pg_url, redis_server.url, tmp_path
    )
    started = time.monotonic()

    async def events(sdk: openai.AsyncOpenAI, delay: float) -> list[tuple[float, str]]:
        await asyncio.sleep(delay)
        stream = await sdk.images.generate(**REQUEST, stream=True, partial_images=3)
        return [(time.monotonic() - started, event.type) async for event in stream]

    leader, follower = await asyncio.gather(events(sdks[0], 0), events(sdks[1], 0.3))
    assert len(slow_upstream.requests) == 1
    assert [t for _, t in follower] == [t for _, t in leader]
    assert [t for _, t in leader][-1] == "image_generation.completed"
    # Live, not replayed at the end: each follower event within a beat of the leader's own.
    for (at_leader, _), (at_follower, _) in zip(leader, follower, strict=True):
        assert at_follower - at_leader < 0.2
    assert follower[0][0] < leader[-1][0] - 0.4  # its first event came long before the last
    for sdk in sdks:
        await sdk.close()


async def test_a_leader_that_vanishes_leaves_no_follower_hanging(
    aiohttp_client: Any,
    make_settings: Callable[..., Settings],
    fake_upstream: FakeUpstream,
    pg_url: str,
    redis_server: RedisServer,
    tmp_path: Any,
) -> None:
    gateways, sdks = await three_replicas(
        aiohttp_client, make_settings, fake_upstream, pg_url, redis_server.url, tmp_path
    )
    # Find the request's key: one request, then its entry's key in the index.
    await sdks[0].images.generate(**{**REQUEST, "prompt": "probe"})
    for gateway in gateways:
        await stored(gateway)
    ((key,),) = await gateways[0].app[SERVICES].store._all("SELECT key FROM cache_entries")
    await gateways[0].app[SERVICES].store.cache.purge(team_id=None, key_id=None)
    # A replica claimed the key and died at once: no stream, no heartbeat, its claim expiring.
    redis = gateways[0].app[SERVICES].cache.remote.redis
    await redis.set(LEAD + key, "dead-replica:1", px=LEAD_TTL_MS)
    begun = time.monotonic()
    raw = await sdks[1].images.with_raw_response.generate(**{**REQUEST, "prompt": "probe"})
    waited = time.monotonic() - begun
    assert raw.headers["x-gateway-cache"] == "miss"  # it went upstream by itself
    assert len(fake_upstream.requests) == 2
    assert waited < LEAD_TTL_MS / 1000 + 2
    for sdk in sdks:
        await sdk.close()
