"""Three `gateway serve` processes on one PostgreSQL and one Redis, driven with the official SDK
(tests/replica_processes.py); the simulator upstream records every call it gets. What must hold
across replicas: a budget for five is never overspent by 60 concurrent requests, a 10 rpm limit
admits exactly 10 of 40, 20 identical requests make one upstream call and a stream follower on
another replica gets each event live, a revoked key is refused everywhere within a second, the
replicas answer each other's misses from the shared cache, and a replica killed with -9 loses
no ledger row."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import openai
import pytest

from tests.conftest import ADMIN_TOKEN, UPSTREAM_KEY, FakeUpstream
from tests.redis_server import RedisServer
from tests.replica_processes import Replicas, replica_environment

# Starts the servers it tests itself (or needs no fixture's database): run once, not again on
# PostgreSQL.
pytestmark = pytest.mark.one_pass

REQUEST: dict[str, Any] = {"model": "gpt-image-1", "prompt": "a kestrel", "quality": "low"}
StartReplicas = Callable[[FakeUpstream], Awaitable[Replicas]]


@pytest.fixture
async def start_replicas(
    pg_url: str, redis_server: RedisServer, tmp_path: Path
) -> AsyncIterator[StartReplicas]:
    """Starts three replicas on `upstream`, sharing the database, Redis and a cache directory."""
    started: list[Replicas] = []

    async def start(upstream: FakeUpstream) -> Replicas:
        env = replica_environment(
            upstream_url=upstream.url, upstream_api_key=UPSTREAM_KEY, admin_token=ADMIN_TOKEN,
            database_url=pg_url, redis_url=redis_server.url,
            cache_store=str(tmp_path / "shared-cache"),
        )  # fmt: skip
        replicas = await Replicas(3, env, tmp_path).__aenter__()
        started.append(replicas)
        return replicas

    yield start
    for replicas in started:
        await replicas.__aexit__(None, None, None)


@pytest.fixture
async def database(pg_url: str) -> AsyncIterator[asyncpg.Connection]:
    """The replicas' database, read directly: the test's own view of the books."""
    conn = await asyncpg.connect(pg_url)
    yield conn
    await conn.close()


async def team_with_key(replicas: Replicas, **limits: Any) -> tuple[str, str]:
    """A team "t" with `limits`, made through replica 0's admin API; its key's secret and id."""
    await replicas.admin(0, "POST", "/admin/teams", ADMIN_TOKEN, name="t", **limits)
    key = await replicas.admin(0, "POST", "/admin/keys", ADMIN_TOKEN, team="t")
    return key["key"], key["id"]


async def until(condition: Callable[[], Awaitable[bool]], what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_sixty_requests_over_three_replicas_never_overspend_a_budget_for_five(
    start_replicas: StartReplicas,
    simulator: Callable[..., Awaitable[FakeUpstream]],
    database: asyncpg.Connection,
) -> None:
    replicas = await start_replicas(await simulator(latency_ms=300))
    # One request's estimate, from a prompt as long as the race's.
    probe, _ = await team_with_key(replicas)
    raw = await replicas.sdk(0, probe).images.with_raw_response.generate(
        **{**REQUEST, "prompt": "a kestrel 00"}
    )
    estimate = await database.fetchval(
        "SELECT estimate_nanos FROM ledger WHERE request_id = $1",
        raw.headers["x-gateway-request-id"],
    )
    budget_usd = str(Decimal(5 * estimate).scaleb(-9))
    await replicas.admin(0, "POST", "/admin/teams", ADMIN_TOKEN, name="race", budget_usd=budget_usd)
    key = (await replicas.admin(0, "POST", "/admin/keys", ADMIN_TOKEN, team="race"))["key"]
    sdks = [replicas.sdk(i, key) for i in range(3)]
    results = await asyncio.gather(
        *(sdks[i % 3].images.generate(**{**REQUEST, "prompt": f"a kestrel {i:02d}"})
          for i in range(60)),
        return_exceptions=True,
    )  # fmt: skip
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert all(not isinstance(r, BaseException) or r in refused for r in results)
    team_rows = "FROM ledger l JOIN teams t ON t.id = l.team_id WHERE t.name = 'race'"

    async def settled() -> bool:
        ok = await database.fetchval(f"SELECT COUNT(*) {team_rows} AND outcome = 'ok'")
        held = await database.fetchval("SELECT COUNT(*) FROM reservations")
        return bool(ok == 60 - len(refused) and held == 0)

    await until(settled, "the admitted requests' rows were never all written")
    rows = await database.fetch(f"SELECT cost_nanos, estimate_nanos {team_rows} AND outcome = 'ok'")
    # Five estimates fit; more went through as settled requests cost less than their holds.
    assert len(rows) >= 5 and refused
    spent = sum(row["cost_nanos"] for row in rows)
    # At most one request's actual-minus-estimate over the budget.
    worst = max(0, max(row["cost_nanos"] - row["estimate_nanos"] for row in rows))
    assert spent <= 5 * estimate + worst


async def test_a_ten_rpm_limit_admits_exactly_ten_of_forty_across_replicas(
    start_replicas: StartReplicas,
    simulator: Callable[..., Awaitable[FakeUpstream]],
) -> None:
    upstream = await simulator(latency_ms=200)
    replicas = await start_replicas(upstream)
    key, _ = await team_with_key(replicas, rpm=10)
    sdks = [replicas.sdk(i, key) for i in range(3)]
    results = await asyncio.gather(
        *(sdks[i % 3].images.generate(**{**REQUEST, "prompt": f"p{i}"}) for i in range(40)),
        return_exceptions=True,
    )
    admitted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert (len(admitted), len(refused)) == (10, 30)
    assert len(upstream.requests) == 10


async def test_twenty_identical_requests_over_three_replicas_make_one_upstream_call(
    start_replicas: StartReplicas,
    simulator: Callable[..., Awaitable[FakeUpstream]],
    database: asyncpg.Connection,
) -> None:
    upstream = await simulator(latency_ms=600)
    replicas = await start_replicas(upstream)
    key, _ = await team_with_key(replicas)
    sdks = [replicas.sdk(i, key) for i in range(3)]
    raws = await asyncio.gather(
        *(sdks[i % 3].images.with_raw_response.generate(**REQUEST) for i in range(20))
    )
    assert len(upstream.requests) == 1
    images = {base64.b64decode(raw.parse().data[0].b64_json or "") for raw in raws}
    assert len(images) == 1
    statuses = sorted(raw.headers["x-gateway-cache"] for raw in raws)
    assert statuses.count("miss") == 1 and set(statuses) <= {"miss", "coalesced", "hit"}
    costs = [raw.headers["x-gateway-cost-usd"] for raw in raws]
    assert sum(cost != "0.00" for cost in costs) == 1  # only the leader paid

    async def every_row() -> bool:  # every request has its row, on whichever replica it came
        return bool(await database.fetchval("SELECT COUNT(*) FROM ledger") == 20)

    await until(every_row, "not every request's row was written")


async def test_a_stream_follower_on_another_replica_gets_every_event_as_it_arrives(
    start_replicas: StartReplicas,
    simulator: Callable[..., Awaitable[FakeUpstream]],
) -> None:
    upstream = await simulator(latency_ms=600, partial_interval_ms=250)
    replicas = await start_replicas(upstream)
    key, _ = await team_with_key(replicas)
    started = time.monotonic()

    async def events(sdk: openai.AsyncOpenAI, delay: float) -> list[tuple[float, str]]:
        await asyncio.sleep(delay)
        stream = await sdk.images.generate(**REQUEST, stream=True, partial_images=3)
        return [(time.monotonic() - started, event.type) async for event in stream]

    leader, follower = await asyncio.gather(
        events(replicas.sdk(0, key), 0), events(replicas.sdk(1, key), 0.3)
    )
    assert len(upstream.requests) == 1
    assert [t for _, t in follower] == [t for _, t in leader]
    assert [t for _, t in leader][-1] == "image_generation.completed"
    # Live, not replayed at the end: each follower event within a beat of the leader's own.
    for (at_leader, _), (at_follower, _) in zip(leader, follower, strict=True):
        assert at_follower - at_leader < 0.2
    assert follower[0][0] < leader[-1][0] - 0.4  # its first event came long before the last


async def test_a_key_revoked_through_one_replica_is_refused_by_the_others_within_a_second(
    start_replicas: StartReplicas,
    simulator: Callable[..., Awaitable[FakeUpstream]],
) -> None:
    replicas = await start_replicas(await simulator())
    key, key_id = await team_with_key(replicas)
    sdks = [replicas.sdk(i, key) for i in range(3)]
    for i, sdk in enumerate(sdks):  # every replica has the key in memory now
        await sdk.images.generate(**{**REQUEST, "prompt": f"warm {i}"})
    await replicas.admin(0, "DELETE", f"/admin/keys/{key_id}", ADMIN_TOKEN)
    revoked_at = time.monotonic()
    for i, sdk in enumerate(sdks[1:]):
        while True:
            try:
                await sdk.images.generate(**{**REQUEST, "prompt": f"after {i}"})
            except openai.AuthenticationError:
                break
            assert time.monotonic() - revoked_at < 1.0, "still accepted a second after revocation"
            await asyncio.sleep(0.02)


async def test_replicas_sharing_a_cache_directory_answer_each_others_misses(
    start_replicas: StartReplicas,
    simulator: Callable[..., Awaitable[FakeUpstream]],
    database: asyncpg.Connection,
) -> None:
    upstream = await simulator()
    replicas = await start_replicas(upstream)
    key, _ = await team_with_key(replicas)
    miss = await replicas.sdk(0, key).images.with_raw_response.generate(**REQUEST)

    async def indexed() -> bool:
        return bool(await database.fetchval("SELECT COUNT(*) FROM cache_entries") == 1)

    await until(indexed, "the miss was never stored")
    hit = await replicas.sdk(2, key).images.with_raw_response.generate(**REQUEST)
    assert (miss.headers["x-gateway-cache"], hit.headers["x-gateway-cache"]) == ("miss", "hit")
    assert hit.parse().data == miss.parse().data and len(upstream.requests) == 1


async def test_a_replica_killed_mid_request_loses_no_ledger_row(
    start_replicas: StartReplicas,
    simulator: Callable[..., Awaitable[FakeUpstream]],
    database: asyncpg.Connection,
) -> None:
    """One replica is killed (-9) while its requests wait on a slow upstream. Its holds become
    `orphaned` rows, charged their estimates, settled by the replicas still running; the others'
    requests are untouched."""
    replicas = await start_replicas(await simulator(latency_ms=4000))
    key, _ = await team_with_key(replicas, budget_usd="100")
    sdks = [replicas.sdk(i, key) for i in range(3)]
    # Two requests on each replica, all waiting on the slow upstream.
    calls = [
        asyncio.ensure_future(sdks[i % 3].images.generate(**{**REQUEST, "prompt": f"p{i}"}))
        for i in range(6)
    ]

    def holds(count: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return bool(await database.fetchval("SELECT COUNT(*) FROM reservations") == count)

        return check

    await until(holds(6), "the holds were not made", seconds=10)
    victim = replicas.processes[0]
    victim.kill()  # SIGKILL: no ending runs, nothing is written
    await victim.wait()  # reaped, as its parent would (a zombie still answers kill -0)
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(results[i], openai.APIConnectionError) for i in (0, 3))
    assert [results[i] for i in (1, 2, 4, 5) if isinstance(results[i], BaseException)] == []
    # A replica still running settles the dead one's holds within a housekeeping round.
    await until(holds(0), "the dead replica's holds were never settled", seconds=25)
    rows = await database.fetch(
        "SELECT outcome, cost_nanos, estimate_nanos FROM ledger l JOIN teams t"
        " ON t.id = l.team_id WHERE t.name = 't'"
    )
    assert sorted(r["outcome"] for r in rows) == ["ok"] * 4 + ["orphaned"] * 2
    orphans = [r for r in rows if r["outcome"] == "orphaned"]
    assert all(r["cost_nanos"] == r["estimate_nanos"] > 0 for r in orphans)
