"""Issue 22: a hung Redis (SIGSTOP) costs a request at most GATEWAY_REDIS_TIMEOUT_S once, then
nothing while the breaker is open: misses, rate limits and coalescing go on per replica; `/readyz`
says `degraded` and `gateway_redis_up` 0 at once, and both come back by themselves."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from typing import Any

from gateway.admin import accounts
from gateway.app import create_app
from gateway.replicas.redis_link import PROBE_S
from gateway.runtime.state import SERVICES
from gateway.settings import Settings
from tests.conftest import FakeUpstream
from tests.e2e.test_cache import sdk_for
from tests.redis_server import RedisServer


async def test_a_hung_redis_slows_nothing_and_is_reported_until_it_is_back(
    aiohttp_client: Any,
    make_settings: Callable[..., Settings],
    fake_upstream: FakeUpstream,
    redis_server: RedisServer,
) -> None:
    settings = make_settings(
        upstream_url=fake_upstream.url, redis_url=redis_server.url, cache_enabled=True
    )
    gateway = await aiohttp_client(create_app(settings))
    store = gateway.app[SERVICES].store
    await accounts.create_team(store, accounts.TeamCreate(name="t", rpm=1000))
    sdk = sdk_for(gateway, (await accounts.create_key(store, accounts.KeyCreate(team="t"))).secret)
    await sdk.images.generate(model="gpt-image-1.5", prompt="warm", quality="low")
    assert redis_server.process is not None
    redis_server.process.send_signal(signal.SIGSTOP)
    try:
        timings = []
        for i in range(10):  # misses: each asks the limiter and the coalescing claim
            started = time.monotonic()
            await sdk.images.generate(model="gpt-image-1.5", prompt=f"hung {i}", quality="low")
            timings.append(time.monotonic() - started)
        assert timings[0] < 1.5  # the one call that found out: its timeout (0.25 s) or two
        assert max(timings[1:]) < 0.5  # then the breaker is open: Redis costs nothing
        ready = await (await gateway.get("/readyz")).json()
        assert ready["status"] == "ready" and "redis unreachable" in ready["degraded"]["redis"]
        assert gateway.app[SERVICES].metrics.redis_up._value.get() == 0
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    for _ in range(int(PROBE_S * 40)):  # no request needed: the probe finds it back
        if "degraded" not in await (await gateway.get("/readyz")).json():
            break
        await asyncio.sleep(0.1)
    assert "degraded" not in await (await gateway.get("/readyz")).json()
    assert gateway.app[SERVICES].metrics.redis_up._value.get() == 1
    await sdk.close()
