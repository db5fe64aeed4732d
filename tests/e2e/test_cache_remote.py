"""Identical requests in flight on different replicas share one upstream call (gateway/cache/
remote.py): here, three gateway apps in this process on one PostgreSQL and one Redis, so a test
can play a replica that claimed a request and died. The same sharing between real processes is
tested in test_replicas.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import openai
import pytest

from gateway.admin import accounts
from gateway.app import create_app
from gateway.cache.remote import LEAD, LEAD_TTL_MS
from gateway.runtime.state import SERVICES
from gateway.settings import Settings
from tests.conftest import FakeUpstream
from tests.e2e.test_cache import stored
from tests.redis_server import RedisServer

# Starts the servers it tests itself (or needs no fixture's database): run once, not again on
# PostgreSQL.
pytestmark = pytest.mark.one_pass

REQUEST: dict[str, Any] = {"model": "gpt-image-1", "prompt": "a crane", "quality": "low"}


async def three_replicas(
    aiohttp_client: Any,
    make_settings: Callable[..., Settings],
    upstream: FakeUpstream,
    pg_url: str,
    redis_url: str,
    tmp_path: Any,
) -> tuple[list[Any], list[openai.AsyncOpenAI]]:
    # Redis's 0.25 s default timeout is for a sick Redis (test_sick_redis.py); on a machine busy
    # with the whole suite a healthy one can be that slow, and these tests are about coalescing.
    settings = make_settings(
        upstream_url=upstream.url, database_url=pg_url, redis_url=redis_url,
        cache_enabled=True, cache_store=tmp_path / "shared-cache", redis_timeout_s=2.0,
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


@pytest.fixture
async def replicas(
    aiohttp_client: Any,
    make_settings: Callable[..., Settings],
    fake_upstream: FakeUpstream,
    pg_url: str,
    redis_server: RedisServer,
    tmp_path: Any,
) -> AsyncIterator[tuple[list[Any], list[openai.AsyncOpenAI]]]:
    """Three replicas on one PostgreSQL and one Redis, each with an SDK; the SDKs closed after."""
    gateways, sdks = await three_replicas(
        aiohttp_client, make_settings, fake_upstream, pg_url, redis_server.url, tmp_path
    )
    yield gateways, sdks
    for sdk in sdks:
        await sdk.close()


async def test_a_leader_that_vanishes_leaves_no_follower_hanging(
    replicas: tuple[list[Any], list[openai.AsyncOpenAI]], fake_upstream: FakeUpstream
) -> None:
    gateways, sdks = replicas
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


async def test_a_client_retrying_on_another_replica_after_its_answer_never_pays_twice(
    replicas: tuple[list[Any], list[openai.AsyncOpenAI]], fake_upstream: FakeUpstream
) -> None:
    """Read-your-writes: the leader keeps its claim until the answer is in the cache, so the
    same request on another replica the moment the first answer arrived is served from it."""
    _, sdks = replicas
    statuses = []
    for i in range(30):
        request = {**REQUEST, "prompt": f"retry {i}"}
        await sdks[i % 3].images.generate(**request)
        raw = await sdks[(i + 1) % 3].images.with_raw_response.generate(**request)
        statuses.append(raw.headers["x-gateway-cache"])
    assert len(fake_upstream.requests) == 30  # one paid call per prompt, never two
    assert set(statuses) <= {"hit", "coalesced"}


async def test_twenty_identical_requests_on_three_replicas_make_one_upstream_call(
    replicas: tuple[list[Any], list[openai.AsyncOpenAI]], fake_upstream: FakeUpstream
) -> None:
    _, sdks = replicas
    for run in range(7):  # the upstream answers at once: the race is at its tightest
        before = len(fake_upstream.requests)
        request = {**REQUEST, "prompt": f"twenty {run}"}
        await asyncio.gather(*(sdks[i % 3].images.generate(**request) for i in range(20)))
        assert len(fake_upstream.requests) - before == 1, f"run {run}"
