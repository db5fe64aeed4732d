"""Several replicas on one PostgreSQL, driven with the official SDK: each replica is a gateway app
with its own connection pool, as separate processes would be. Budgets hold across all of them
at once, and a key revoked through one is refused by the others within a second."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai

from gateway import accounts
from gateway.app import create_app
from gateway.settings import Settings
from gateway.state import DETACHED, SERVICES
from tests.conftest import ADMIN_TOKEN, FakeUpstream

REQUEST: dict[str, Any] = {"model": "gpt-image-1", "prompt": "a kestrel", "quality": "low"}


async def replicas(aiohttp_client: Any, settings: Settings, count: int = 3) -> list[Any]:
    return [await aiohttp_client(create_app(settings)) for _ in range(count)]


def sdk_for(gateway: Any, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=str(gateway.make_url("/v1")), api_key=key, max_retries=0, timeout=30
    )


async def test_sixty_requests_over_three_replicas_never_overspend_a_budget_for_five(
    aiohttp_client: Any,
    fake_upstream: FakeUpstream,
    make_settings: Callable[..., Settings],
    pg_url: str,
) -> None:
    gateways = await replicas(aiohttp_client, make_settings(upstream_url=fake_upstream.url,
                                                            database_url=pg_url))  # fmt: skip
    store = gateways[0].app[SERVICES].store
    await accounts.create_team(store, accounts.TeamCreate(name="probe"))
    probe = (await accounts.create_key(store, accounts.KeyCreate(team="probe"))).secret
    raw = await sdk_for(gateways[0], probe).images.with_raw_response.generate(**REQUEST)
    (estimate,) = await store._all(
        "SELECT estimate_nanos FROM ledger WHERE request_id = :id",
        {"id": raw.headers["x-gateway-request-id"]},
    )
    budget = 5 * estimate[0]
    team = await accounts.create_team(store, accounts.TeamCreate(name="t"))
    await store.update_team("t", budget_nanos=budget)
    key = (await accounts.create_key(store, accounts.KeyCreate(team="t"))).secret
    sdks = [sdk_for(gateway, key) for gateway in gateways]
    results = await asyncio.gather(
        *(sdks[i % 3].images.generate(**REQUEST) for i in range(60)), return_exceptions=True
    )
    for gateway in gateways:
        while tasks := list(gateway.app[DETACHED]):
            await asyncio.wait(tasks)
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert all(not isinstance(r, BaseException) or r in refused for r in results)
    rows = await store._all(
        "SELECT outcome, cost_nanos, estimate_nanos FROM ledger WHERE team_id = :team",
        {"team": team.id},
    )
    ok = [row for row in rows if row[0] == "ok"]
    # Five estimates fit; more went through as settled requests cost less than their holds.
    assert len(ok) == 60 - len(refused) and len(ok) >= 5 and refused
    spent = sum(row[1] for row in ok)
    # At most one request's actual-minus-estimate over the budget.
    assert spent <= budget + max(0, max(row[1] - row[2] for row in ok))
    assert await store._all("SELECT 1 FROM reservations") == []  # no hold left behind
    for sdk in sdks:
        await sdk.close()


async def test_a_key_revoked_through_one_replica_is_refused_by_the_others_within_a_second(
    aiohttp_client: Any,
    fake_upstream: FakeUpstream,
    make_settings: Callable[..., Settings],
    pg_url: str,
) -> None:
    gateways = await replicas(aiohttp_client, make_settings(upstream_url=fake_upstream.url,
                                                            database_url=pg_url))  # fmt: skip
    store = gateways[0].app[SERVICES].store
    await accounts.create_team(store, accounts.TeamCreate(name="t"))
    issued = await accounts.create_key(store, accounts.KeyCreate(team="t"))
    sdks = [sdk_for(gateway, issued.secret) for gateway in gateways]
    for sdk in sdks:  # every replica has the key in memory now
        await sdk.images.generate(**REQUEST)
    revoked = await gateways[0].delete(
        f"/admin/keys/{issued.record.id}",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert revoked.status == 200
    started = time.monotonic()
    for sdk in sdks[1:]:
        while True:
            try:
                await sdk.images.generate(**REQUEST)
            except openai.AuthenticationError:
                break
            assert time.monotonic() - started < 1.2, "still accepted a second after revocation"
            await asyncio.sleep(0.05)
    for sdk in sdks:
        await sdk.close()


async def test_replicas_sharing_a_cache_directory_answer_each_others_misses(
    aiohttp_client: Any,
    fake_upstream: FakeUpstream,
    make_settings: Callable[..., Settings],
    pg_url: str,
    tmp_path: Path,
) -> None:
    shared = tmp_path / "shared-cache"
    gateways = [
        await aiohttp_client(
            create_app(
                make_settings(
                    upstream_url=fake_upstream.url,
                    database_url=pg_url,
                    data_dir=tmp_path / f"replica{i}",  # each its own disk but for the cache
                    cache_enabled=True,
                    cache_store=shared,
                    cache_inline_max_bytes=0,  # every body a file in the shared directory
                )
            )
        )
        for i in range(2)
    ]
    store = gateways[0].app[SERVICES].store
    await accounts.create_team(store, accounts.TeamCreate(name="t"))
    key = (await accounts.create_key(store, accounts.KeyCreate(team="t"))).secret
    first, second = (sdk_for(gateway, key) for gateway in gateways)
    miss = await first.images.with_raw_response.generate(**REQUEST)
    while gateways[0].app[DETACHED] or gateways[0].app[SERVICES].cache.storing:
        await gateways[0].app[SERVICES].cache.drain()
        await asyncio.sleep(0.01)
    hit = await second.images.with_raw_response.generate(**REQUEST)
    assert (miss.headers["x-gateway-cache"], hit.headers["x-gateway-cache"]) == ("miss", "hit")
    assert hit.parse().data == miss.parse().data and len(fake_upstream.requests) == 1
    assert [p.name for p in (shared / "bodies").glob("*/*")] == [
        sha for sha, _ in await store.cache.bodies()
    ]
    await first.close()
    await second.close()
