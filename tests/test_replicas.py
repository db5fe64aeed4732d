"""Several replicas on one PostgreSQL, driven with the official SDK: each replica is a gateway app
with its own connection pool, as separate processes would be. Budgets hold across all of them
at once, and a key revoked through one is refused by the others within a second."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
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
from tests.e2e.test_cache import stored
from tests.e2e.test_shutdown import free_port, wait_until_up
from tests.redis_server import RedisServer

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
    await stored(gateways[0])
    hit = await second.images.with_raw_response.generate(**REQUEST)
    assert (miss.headers["x-gateway-cache"], hit.headers["x-gateway-cache"]) == ("miss", "hit")
    assert hit.parse().data == miss.parse().data and len(fake_upstream.requests) == 1
    assert [p.name for p in (shared / "bodies").glob("*/*")] == [
        sha for sha, _ in await store.cache.bodies()
    ]
    await first.close()
    await second.close()


def test_a_replica_killed_mid_request_loses_no_ledger_row(
    tmp_path: Path, postgres_server: Any, redis_server: RedisServer
) -> None:
    """Three `gateway serve` processes on one PostgreSQL and one Redis; one is killed (-9) while
    its requests wait on a slow upstream. Its holds become `orphaned` rows, charged their
    estimates, settled by the replicas still running; the others' requests are untouched."""
    database = asyncio.run(postgres_server.new_database())
    sim_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "gateway", "simulator", "--port", str(sim_port),
             "--latency-ms", "4000"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    ]  # fmt: skip
    shared = env | {
        "GATEWAY_UPSTREAM_URL": f"http://127.0.0.1:{sim_port}/v1",
        "GATEWAY_DATABASE_URL": database,
        "GATEWAY_REDIS_URL": redis_server.url,
    }
    ports = [free_port() for _ in range(3)]
    try:
        cli_env = shared | {"GATEWAY_DATA_DIR": str(tmp_path / "cli")}
        subprocess.run([sys.executable, "-m", "gateway", "teams", "create", "t", "--budget-usd",
                        "100"], env=cli_env, check=True, capture_output=True)  # fmt: skip
        created = subprocess.run(
            [sys.executable, "-m", "gateway", "keys", "create", "--team", "t"],
            env=cli_env,
            check=True,
            capture_output=True,
            text=True,
        )
        key = created.stdout.strip().splitlines()[-1]
        for i, port in enumerate(ports):
            replica = shared | {
                "GATEWAY_PORT": str(port),
                "GATEWAY_DATA_DIR": str(tmp_path / f"r{i}"),
            }
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve"], env=replica,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))  # fmt: skip
        for port in (sim_port, *ports):
            wait_until_up(port)
        victim = processes[1]
        outcomes = asyncio.run(_kill_one_mid_request(ports, key, victim, database))
        assert outcomes["survivors"] == ["ok"] * 4  # the other replicas' requests finished
        assert outcomes["killed"] == 2  # the victim's two clients lost their connections
        rows = outcomes["rows"]
        assert sorted(r[0] for r in rows) == ["ok"] * 4 + ["orphaned"] * 2
        orphans = [r for r in rows if r[0] == "orphaned"]
        assert all(cost == estimate > 0 for _, cost, estimate in orphans)
        assert outcomes["holds_left"] == 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


async def _kill_one_mid_request(
    ports: list[int], key: str, victim: subprocess.Popen[bytes], database: str
) -> dict[str, Any]:
    import asyncpg

    sdks = [
        openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{p}/v1", api_key=key, max_retries=0,
                           timeout=60)
        for p in ports
    ]  # fmt: skip
    # Two requests on each replica, all waiting on the slow upstream.
    calls = [
        asyncio.ensure_future(sdks[i % 3].images.generate(**{**REQUEST, "prompt": f"p{i}"}))
        for i in range(6)
    ]
    conn = await asyncpg.connect(database)
    try:
        deadline = time.monotonic() + 10
        while await conn.fetchval("SELECT COUNT(*) FROM reservations") < 6:
            assert time.monotonic() < deadline, "the holds were not made"
            await asyncio.sleep(0.05)
        victim.kill()  # SIGKILL: no ending runs, nothing is written
        victim.wait()  # reaped, as its parent would (a zombie still answers kill -0)
        results = await asyncio.gather(*calls, return_exceptions=True)
        killed = sum(isinstance(results[i], openai.APIConnectionError) for i in (0, 3))
        survivors = ["ok" if not isinstance(results[i], BaseException) else repr(results[i])
                     for i in (1, 2, 4, 5)]  # fmt: skip
        # A replica still running settles the dead one's holds within a housekeeping round.
        deadline = time.monotonic() + 25
        while await conn.fetchval("SELECT COUNT(*) FROM reservations") > 0:
            assert time.monotonic() < deadline, "the dead replica's holds were never settled"
            await asyncio.sleep(0.2)
        rows = [tuple(r) for r in await conn.fetch(
            "SELECT outcome, cost_nanos, estimate_nanos FROM ledger l JOIN teams t"
            " ON t.id = l.team_id WHERE t.name = 't'"
        )]  # fmt: skip
        holds_left = await conn.fetchval("SELECT COUNT(*) FROM reservations")
    finally:
        await conn.close()
        for sdk in sdks:
            await sdk.close()
    return {"survivors": survivors, "killed": killed, "rows": rows, "holds_left": holds_left}
