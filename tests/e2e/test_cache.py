"""The response cache end to end, driven with the official `openai` SDK against the gateway in
front of the recording fake upstream."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import Callable
from typing import Any

import openai
import pytest

from gateway.runtime.state import SERVICES
from tests.conftest import ADMIN_TOKEN, FakeUpstream, auth
from tests.images import png

PROMPT: dict[str, Any] = {
    "model": "gpt-image-1",
    "prompt": "a sea otter",
    "quality": "low",
    "size": "1024x1024",
}
# gpt-image-1, low, 1024x1024: 272 image output tokens at $40/M, and the simulator counts the
# prompt as 3 text tokens at $5/M.
LOW_COST_NANOS = 272 * 40_000 + 3 * 5_000
LOW_COST = "0.010895"


@pytest.fixture
def gateway_overrides() -> dict[str, Any]:
    # Every body a file here (the simulator's are small); test_cache_inline.py covers bodies
    # kept in the index.
    return {"cache_enabled": True, "cache_inline_max_bytes": 0}


async def stored(gateway: Any) -> None:
    """Wait for the cache's background stores (a whole body is stored after it was sent), and
    for their leaders to close (until then an identical request joins the leader's answer)."""
    services = gateway.app[SERVICES]
    while services.tasks.pending() or services.cache.storing or len(services.cache.in_flight):
        await services.tasks.settle()
        await services.cache.drain()


def sdk_for(gateway: Any, key: str, **options: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=str(gateway.make_url("/v1")), api_key=key, max_retries=0, timeout=20, **options
    )


async def ledger(gateway: Any) -> list[tuple[Any, ...]]:
    return [
        tuple(row)
        for row in await gateway.app[SERVICES].store._all(
            "SELECT cache_status, status, outcome, cost_nanos, saved_nanos FROM ledger ORDER BY id"
        )
    ]


async def generate_raw(sdk: openai.AsyncOpenAI, **params: Any) -> tuple[str, str, str]:
    """(x-gateway-cache, x-gateway-cost-usd, the first image's b64) of one generation."""
    raw = await sdk.images.with_raw_response.generate(**{**PROMPT, **params})
    result = raw.parse()
    assert result.data is not None
    b64 = result.data[0].b64_json or result.data[0].url or ""
    return raw.headers["x-gateway-cache"], raw.headers["x-gateway-cost-usd"], b64


async def test_a_repeated_generation_is_a_free_hit_with_the_same_image(
    sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream, gateway: Any
) -> None:
    first = await generate_raw(sdk)
    second = await generate_raw(sdk)
    assert first[:2] == ("miss", LOW_COST)
    assert second[:2] == ("hit", "0.00")
    assert base64.b64decode(second[2]) == base64.b64decode(first[2])
    assert len(fake_upstream.requests) == 1
    original = LOW_COST_NANOS
    assert await ledger(gateway) == [
        ("miss", 200, "ok", original, 0),
        ("hit", 200, "ok", 0, original),
    ]
    # Ignored fields and key order do not matter; other fields do.
    assert (await generate_raw(sdk, user="someone-else"))[0] == "hit"
    assert (await generate_raw(sdk, quality="medium"))[0] == "miss"
    assert len(fake_upstream.requests) == 2


async def test_a_hit_carries_the_stored_headers_and_its_own(gateway: Any, key: str) -> None:
    for _ in range(2):
        response = await gateway.post("/v1/images/generations", json=PROMPT, headers=auth(key))
        body = await response.read()
        await stored(gateway)
    assert response.headers["x-gateway-cache"] == "hit"
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["Content-Length"] == str(len(body))
    assert response.headers["x-gateway-saved-usd"] == LOW_COST
    assert response.headers["x-request-id"] == response.headers["x-gateway-request-id"]
    assert int(response.headers["age"]) >= 0


async def test_a_repeated_edit_with_the_same_images_is_a_hit_and_another_image_is_not(
    sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream
) -> None:
    images = [png(64, 64, seed=1), png(64, 64, seed=2)]

    async def edit(pictures: list[bytes], names: tuple[str, str]) -> str:
        raw = await sdk.images.with_raw_response.edit(
            model="gpt-image-1",
            prompt="make them blue",
            image=[
                (name, io.BytesIO(p), "image/png") for name, p in zip(names, pictures, strict=True)
            ],
            quality="low",
        )
        return raw.headers["x-gateway-cache"]

    assert await edit(images, ("a.png", "b.png")) == "miss"
    assert await edit(images, ("other.png", "names.png")) == "hit"
    assert await edit(list(reversed(images)), ("a.png", "b.png")) == "miss"
    assert await edit([images[0], png(64, 64, seed=3)], ("a.png", "b.png")) == "miss"
    assert len(fake_upstream.requests) == 3


async def stream_events(sdk: openai.AsyncOpenAI, **params: Any) -> list[tuple[str, str]]:
    stream = await sdk.images.generate(**{**PROMPT, "partial_images": 2, **params}, stream=True)
    return [(event.type, event.b64_json) async for event in stream]


async def test_a_stream_is_replayed_as_the_same_events(
    sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream, gateway: Any, key: str
) -> None:
    first = await stream_events(sdk)
    second = await stream_events(sdk)
    assert [kind for kind, _ in first] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    assert second == first
    assert len(fake_upstream.requests) == 1
    # A stream and a whole response never share an entry.
    assert (await generate_raw(sdk))[0] == "miss"
    # The replay ends with the gateway's own cost comment, saying it cost nothing.
    response = await gateway.post(
        "/v1/images/generations",
        json={**PROMPT, "stream": True, "partial_images": 2},
        headers=auth(key),
    )
    text = await response.text()
    assert response.headers["x-gateway-cache"] == "hit"
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert text.endswith(": gateway-cost-usd=0.00\n\n")


async def test_twenty_identical_requests_in_flight_make_one_upstream_call(
    sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream, gateway: Any
) -> None:
    slow = {"extra_headers": {"x-simulator-fault": "slow:300"}}
    results = await asyncio.gather(*(generate_raw(sdk, **slow) for _ in range(20)))
    assert len(fake_upstream.requests) == 1
    assert sorted(status for status, _, _ in results) == ["coalesced"] * 19 + ["miss"]
    assert len({image for _, _, image in results}) == 1
    rows = await ledger(gateway)
    assert sum(row[3] for row in rows) == LOW_COST_NANOS
    assert all(row[4] == rows[0][3] for row in rows if row[0] == "coalesced")


async def test_a_follower_joining_a_live_stream_gets_every_event(
    aiohttp_server: Any, aiohttp_client: Any, make_settings: Callable[..., Any]
) -> None:
    gateway, key, upstream = await paced_gateway(aiohttp_server, aiohttp_client, make_settings, 300)
    sdk = sdk_for(gateway, key)

    leader = await sdk.images.generate(**PROMPT, stream=True, partial_images=3)
    leader_events = []
    async for event in leader:
        leader_events.append((event.type, event.b64_json))
        if len(leader_events) == 2:
            break  # two events in: the stream is live; a twin joins now
    follower_task = asyncio.create_task(stream_events(sdk, partial_images=3))
    async for event in leader:
        leader_events.append((event.type, event.b64_json))
    follower_events = await follower_task
    assert len(leader_events) == 4
    assert follower_events == leader_events
    assert len(upstream.requests) == 1
    rows = await ledger(gateway)
    assert [row[0] for row in rows] == ["miss", "coalesced"]
    await sdk.close()


async def test_two_teams_never_share_an_entry(
    gateway: Any, make_key: Callable[..., Any], fake_upstream: FakeUpstream
) -> None:
    sdk_a = sdk_for(gateway, await make_key("team-a"))
    sdk_b = sdk_for(gateway, await make_key("team-b"))
    assert (await generate_raw(sdk_a))[0] == "miss"
    assert (await generate_raw(sdk_b))[0] == "miss"
    assert (await generate_raw(sdk_a))[0] == "hit"
    assert (await generate_raw(sdk_b))[0] == "hit"
    # Another key of the same team shares the team's entry.
    sdk_a2 = sdk_for(gateway, await make_key("team-a"))
    assert (await generate_raw(sdk_a2))[0] == "hit"
    assert len(fake_upstream.requests) == 2


@pytest.mark.parametrize(("scope", "calls"), [("key", 3), ("global", 1)])
async def test_scope_can_be_narrowed_to_the_key_or_widened_to_all(
    aiohttp_client: Any,
    fake_upstream: FakeUpstream,
    make_settings: Callable[..., Any],
    scope: str,
    calls: int,
) -> None:
    from gateway.admin import accounts
    from gateway.app import create_app

    settings = make_settings(upstream_url=fake_upstream.url, cache_enabled=True, cache_scope=scope)
    gateway = await aiohttp_client(create_app(settings))
    store = gateway.app[SERVICES].store
    keys = []
    for team in ("a", "a", "b"):
        if await store.get_team(team) is None:
            await accounts.create_team(store, accounts.TeamCreate(name=team))
        keys.append((await accounts.create_key(store, accounts.KeyCreate(team=team))).secret)
    for secret in keys:
        await generate_raw(sdk_for(gateway, secret))
    assert len(fake_upstream.requests) == calls


async def test_cache_control_no_cache_refreshes_and_no_store_bypasses(
    sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream, gateway: Any
) -> None:
    assert (await generate_raw(sdk))[0] == "miss"
    no_store = {"extra_headers": {"Cache-Control": "no-store"}}
    assert (await generate_raw(sdk, **no_store))[0] == "bypass"
    no_cache = {"extra_headers": {"Cache-Control": "no-cache"}}
    fresh = await generate_raw(sdk, **no_cache)
    assert fresh[0] == "miss" and fresh[1] == LOW_COST
    assert len(fake_upstream.requests) == 3
    # The no-cache response replaced the entry; a plain request now gets it.
    again = await generate_raw(sdk)
    assert again[0] == "hit" and again[2] == fresh[2]
    # no-store on a new prompt stored nothing.
    assert (await generate_raw(sdk, prompt="new", **no_store))[0] == "bypass"
    assert (await generate_raw(sdk, prompt="new"))[0] == "miss"


async def test_caching_can_be_turned_off_for_a_team(
    aiohttp_client: Any, fake_upstream: FakeUpstream, make_settings: Callable[..., Any]
) -> None:
    from gateway.admin import accounts
    from gateway.app import create_app

    settings = make_settings(
        upstream_url=fake_upstream.url, cache_enabled=True, cache_disabled_teams=["private"]
    )
    gateway = await aiohttp_client(create_app(settings))
    store = gateway.app[SERVICES].store
    await accounts.create_team(store, accounts.TeamCreate(name="private"))
    sdk = sdk_for(
        gateway, (await accounts.create_key(store, accounts.KeyCreate(team="private"))).secret
    )
    assert [(await generate_raw(sdk))[0] for _ in range(2)] == ["bypass", "bypass"]
    assert len(fake_upstream.requests) == 2
    assert (await gateway.app[SERVICES].cache.stats())["entries"] == 0


async def test_hits_are_free_but_count_against_rpm(
    gateway: Any, make_key: Callable[..., Any], fake_upstream: FakeUpstream
) -> None:
    # A budget for exactly one request: the hit after it is still served, costing nothing.
    key = await make_key("tight", budget_usd="0.011", rpm=3)
    sdk = sdk_for(gateway, key)
    assert (await generate_raw(sdk))[:2] == ("miss", LOW_COST)
    assert (await generate_raw(sdk))[:2] == ("hit", "0.00")
    with pytest.raises(openai.RateLimitError) as refused:
        await generate_raw(sdk, quality="medium")
    assert refused.value.code == "insufficient_quota"
    with pytest.raises(openai.RateLimitError) as limited:
        await generate_raw(sdk)
    assert limited.value.code == "rate_limit_exceeded"
    assert len(fake_upstream.requests) == 1


async def test_a_failed_leader_fails_its_followers_and_nothing_is_cached(
    sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream, gateway: Any
) -> None:
    fault = {"extra_headers": {"x-simulator-fault": "error:500"}}

    async def attempt() -> int:
        try:
            await generate_raw(sdk, **fault)
        except openai.InternalServerError as exc:
            return exc.status_code
        return 200

    statuses = await asyncio.wait_for(asyncio.gather(*(attempt() for _ in range(5))), 10)
    assert statuses == [500] * 5
    assert len(fake_upstream.requests) < 5  # followers that joined shared the leader's error
    assert (await gateway.app[SERVICES].cache.stats())["entries"] == 0
    assert (await generate_raw(sdk))[0] == "miss"


async def test_an_unreachable_upstream_fails_followers_with_the_same_error(
    aiohttp_client: Any, make_settings: Callable[..., Any], make_key: Callable[..., Any]
) -> None:
    from gateway.admin import accounts
    from gateway.app import create_app

    settings = make_settings(upstream_url="http://127.0.0.1:9/v1", cache_enabled=True)
    gateway = await aiohttp_client(create_app(settings))
    store = gateway.app[SERVICES].store
    await accounts.create_team(store, accounts.TeamCreate(name="t"))
    key = (await accounts.create_key(store, accounts.KeyCreate(team="t"))).secret
    responses = await asyncio.wait_for(
        asyncio.gather(
            *(
                gateway.post("/v1/images/generations", json=PROMPT, headers=auth(key))
                for _ in range(5)
            )
        ),
        10,
    )
    assert [r.status for r in responses] == [502] * 5
    assert {(await r.json())["error"]["code"] for r in responses} == {"upstream_unreachable"}


async def test_the_leaders_client_leaving_does_not_cancel_the_call_its_followers_wait_on(
    gateway: Any, key: str, fake_upstream: FakeUpstream
) -> None:
    slow = {**auth(key), "x-simulator-fault": "slow:400"}
    leader = asyncio.create_task(gateway.post("/v1/images/generations", json=PROMPT, headers=slow))
    await asyncio.sleep(0.1)
    follower = asyncio.create_task(
        gateway.post("/v1/images/generations", json=PROMPT, headers=slow)
    )
    await asyncio.sleep(0.1)
    leader.cancel()  # the leader's client goes away while upstream works
    response = await asyncio.wait_for(follower, 10)
    assert response.status == 200
    assert response.headers["x-gateway-cache"] == "coalesced"
    assert len(fake_upstream.requests) == 1
    for _ in range(50):
        if (await gateway.app[SERVICES].cache.stats())["entries"] == 1:
            break
        await asyncio.sleep(0.05)
    assert (await gateway.app[SERVICES].cache.stats())["entries"] == 1


async def test_a_corrupted_body_file_is_never_served_and_the_next_response_repairs_it(
    sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream, gateway: Any
) -> None:
    first = await generate_raw(sdk)
    await stored(gateway)
    cache = gateway.app[SERVICES].cache
    (sha256,) = [sha for sha, _ in await gateway.app[SERVICES].store.cache.bodies()]
    path = cache.files.path(sha256)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, same size
    path.write_bytes(bytes(data))
    assert (await generate_raw(sdk))[0] == "miss"
    assert len(fake_upstream.requests) == 2
    await stored(gateway)
    repaired = await generate_raw(sdk)
    assert repaired[0] == "hit" and repaired[2] == first[2]
    # The repaired body may differ from the first in its `created` second: the entry's own file.
    (entry,) = await gateway.app[SERVICES].store.cache.recent(None, 10, time.time())
    cache.files.path(entry.body_sha256).unlink()  # a missing body is a miss too
    assert (await generate_raw(sdk))[0] == "miss"


async def test_eviction_by_size_drops_the_least_recently_used(
    aiohttp_client: Any, fake_upstream: FakeUpstream, make_settings: Callable[..., Any]
) -> None:
    from gateway.admin import accounts
    from gateway.app import create_app

    async def one_body_size() -> int:
        probe = make_settings(upstream_url=fake_upstream.url, cache_enabled=True)
        client = await aiohttp_client(create_app(probe))
        store = client.app[SERVICES].store
        await accounts.create_team(store, accounts.TeamCreate(name="t"))
        key = (await accounts.create_key(store, accounts.KeyCreate(team="t"))).secret
        await generate_raw(sdk_for(client, key), prompt="p0")
        await stored(client)
        return int((await client.app[SERVICES].cache.stats())["bytes"])

    size = await one_body_size()
    settings = make_settings(
        upstream_url=fake_upstream.url, cache_enabled=True, cache_max_bytes=int(size * 2.5),
        data_dir=make_settings().data_dir.parent / "evict",
    )  # fmt: skip
    gateway = await aiohttp_client(create_app(settings))
    store = gateway.app[SERVICES].store
    await accounts.create_team(store, accounts.TeamCreate(name="t"))
    sdk = sdk_for(gateway, (await accounts.create_key(store, accounts.KeyCreate(team="t"))).secret)
    for prompt in ("p1", "p2"):
        await generate_raw(sdk, prompt=prompt)
        await stored(gateway)
    await asyncio.sleep(0.01)
    assert (await generate_raw(sdk, prompt="p1"))[0] == "hit"  # p1 is now more recent than p2
    await generate_raw(sdk, prompt="p3")  # three bodies do not fit: p2 goes
    await stored(gateway)
    stats = await gateway.app[SERVICES].cache.stats()
    assert stats["entries"] == 2 and stats["bytes"] <= size * 2.5
    assert (await generate_raw(sdk, prompt="p1"))[0] == "hit"
    assert (await generate_raw(sdk, prompt="p3"))[0] == "hit"
    assert (await generate_raw(sdk, prompt="p2"))[0] == "miss"
    assert len(list(gateway.app[SERVICES].cache.files.bodies.glob("*/*"))) <= 2


async def test_entries_expire_after_their_ttl(
    aiohttp_client: Any, fake_upstream: FakeUpstream, make_settings: Callable[..., Any]
) -> None:
    from gateway.admin import accounts
    from gateway.app import create_app

    settings = make_settings(upstream_url=fake_upstream.url, cache_enabled=True, cache_ttl_s=0.5)
    gateway = await aiohttp_client(create_app(settings))
    store = gateway.app[SERVICES].store
    await accounts.create_team(store, accounts.TeamCreate(name="t"))
    sdk = sdk_for(gateway, (await accounts.create_key(store, accounts.KeyCreate(team="t"))).secret)
    assert (await generate_raw(sdk))[0] == "miss"
    assert (await generate_raw(sdk))[0] == "hit"
    await asyncio.sleep(0.6)
    assert (await generate_raw(sdk))[0] == "miss"
    await asyncio.sleep(0.6)
    await gateway.app[SERVICES].cache.housekeeping()  # expired entries and their bodies go
    assert (await gateway.app[SERVICES].cache.stats())["entries"] == 0
    assert list(gateway.app[SERVICES].cache.files.bodies.glob("*/*")) == []


async def test_answers_with_urls_expire_before_the_links_do(
    sdk: openai.AsyncOpenAI, gateway: Any
) -> None:
    await sdk.images.generate(model="dall-e-2", prompt="a sea otter")
    await stored(gateway)
    rows = await gateway.app[SERVICES].store._all(
        "SELECT expires_at - created_at FROM cache_entries"
    )
    assert rows and rows[0][0] <= 50 * 60


async def test_admin_stats_and_purge_by_team_and_key(
    gateway: Any, make_key: Callable[..., Any], fake_upstream: FakeUpstream
) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    key_a, key_b = await make_key("team-a"), await make_key("team-b")
    for secret in (key_a, key_b):
        await generate_raw(sdk_for(gateway, secret))
    await generate_raw(sdk_for(gateway, key_a))  # a hit

    stats = await (await gateway.get("/admin/cache/stats", headers=admin)).json()
    assert stats["entries"] == 2 and stats["hits"] == 1 and stats["bodies"] >= 1
    teams = {team["team"]: team for team in stats["teams"]}
    assert teams["team-a"]["hits"] == 1 and teams["team-a"]["saved_usd"] == LOW_COST
    assert teams["team-b"]["saved_usd"] == "0.00"
    assert set(teams["team-a"]) == {"team", "entries", "bytes", "hits", "saved_usd"}

    assert (await gateway.get("/admin/cache/stats")).status == 401
    purged = await gateway.post("/admin/cache/purge", json={"team": "team-a"}, headers=admin)
    assert (await purged.json())["purged"] == 1
    assert (await generate_raw(sdk_for(gateway, key_a)))[0] == "miss"
    assert (await generate_raw(sdk_for(gateway, key_b)))[0] == "hit"

    key_id = (await (await gateway.get("/admin/keys?team=team-b", headers=admin)).json())["data"][
        0
    ]["id"]
    purged = await gateway.post("/admin/cache/purge", json={"key": key_id}, headers=admin)
    assert (await purged.json())["purged"] == 1
    missing = await gateway.post("/admin/cache/purge", json={"team": "nope"}, headers=admin)
    assert missing.status == 404
    everything = await gateway.post("/admin/cache/purge", json={}, headers=admin)
    assert (await everything.json())["purged"] == 1
    assert (await gateway.app[SERVICES].cache.stats())["bytes"] == 0


async def test_other_image_paths_bypass_the_cache(gateway: Any, key: str) -> None:
    for _ in range(2):
        response = await gateway.get("/v1/images/unknown-thing", headers=auth(key))
        assert response.headers["x-gateway-cache"] == "bypass"


@pytest.mark.sqlite_only
async def test_cli_stats_verify_and_purge_on_the_servers_data_dir(
    sdk: openai.AsyncOpenAI, gateway: Any, tmp_path: Any
) -> None:
    from tests.e2e.test_cli import gateway as run_cli

    await generate_raw(sdk, prompt="one")
    await generate_raw(sdk, prompt="two", quality="medium")
    await stored(gateway)
    bodies = [sha for sha, _ in await gateway.app[SERVICES].store.cache.bodies()]
    assert len(bodies) == 2
    gateway.app[SERVICES].cache.files.path(bodies[0]).write_bytes(b"not the image it was")

    def cli(*args: str) -> str:
        return run_cli(tmp_path, "cache", *args).stdout

    assert "checked 2 bodies: 1 missing or corrupt, 1 entries dropped" in await asyncio.to_thread(
        cli, "verify"
    )
    stats = json.loads(await asyncio.to_thread(cli, "stats", "--json"))
    assert stats["entries"] == 1 and stats["bodies"] == 1
    assert not gateway.app[SERVICES].cache.files.path(bodies[0]).exists()
    refused = await asyncio.to_thread(run_cli, tmp_path, "cache", "purge", check=False)
    assert refused.returncode == 2 and "--all" in refused.stderr
    assert "purged 1 entries" in await asyncio.to_thread(cli, "purge", "--team", "team-a")
    assert json.loads(await asyncio.to_thread(cli, "stats", "--json"))["entries"] == 0


async def test_hits_are_sent_in_chunks_where_the_loop_has_no_sendfile(
    sdk: openai.AsyncOpenAI, gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await generate_raw(sdk)
    await stored(gateway)

    async def no_sendfile(*args: Any, **kwargs: Any) -> int:
        raise NotImplementedError

    monkeypatch.setattr(asyncio.get_running_loop(), "sendfile", no_sendfile)
    monkeypatch.setattr("gateway.proxy.client.SEND_CHUNK", 1000)
    again = await generate_raw(sdk)
    assert again[0] == "hit" and again[2] == first[2]


async def paced_gateway(
    aiohttp_server: Any, aiohttp_client: Any, make_settings: Callable[..., Any], interval_ms: float
) -> tuple[Any, str, Any]:
    """A gateway (cache on) in front of a simulator that spaces stream events `interval_ms`
    apart; its client, a key, and the simulator's state."""
    from gateway.admin import accounts
    from gateway.app import create_app
    from simulator import SIMULATOR_STATE, SimulatorConfig, create_simulator_app

    config = SimulatorConfig(record=True, api_key="sk-upstream", partial_interval_ms=interval_ms)
    upstream_app = create_simulator_app(config)
    upstream = await aiohttp_server(upstream_app)
    settings = make_settings(
        upstream_url=str(upstream.make_url("/v1")),
        upstream_api_key="sk-upstream",
        cache_enabled=True,
    )
    gateway = await aiohttp_client(create_app(settings))
    store = gateway.app[SERVICES].store
    await accounts.create_team(store, accounts.TeamCreate(name="t"))
    key = (await accounts.create_key(store, accounts.KeyCreate(team="t"))).secret
    return gateway, key, upstream_app[SIMULATOR_STATE]


async def test_followers_of_a_cut_stream_get_the_events_and_the_same_error(
    aiohttp_server: Any, aiohttp_client: Any, make_settings: Callable[..., Any]
) -> None:
    gateway, key, upstream = await paced_gateway(aiohttp_server, aiohttp_client, make_settings, 50)
    body = {**PROMPT, "stream": True, "partial_images": 2}
    headers = {**auth(key), "x-simulator-fault": "cut:2"}

    async def stream() -> tuple[str, str]:
        response = await gateway.post("/v1/images/generations", json=body, headers=headers)
        return response.headers["x-gateway-cache"], await response.text()

    leader = asyncio.create_task(stream())
    await asyncio.sleep(0.02)  # the leader claims the key first
    (leader_status, leader_text), (follower_status, follower_text) = await asyncio.gather(
        leader, stream()
    )
    assert (leader_status, follower_status) == ("miss", "coalesced")
    assert len(upstream.requests) == 1
    for text in (leader_text, follower_text):
        assert text.count("event: image_generation.partial_image") == 2
        assert '"code":"stream_cut"' in text
    assert (await gateway.app[SERVICES].cache.stats())["entries"] == 0
    rows = await ledger(gateway)
    assert [(row[0], row[2]) for row in rows] == [
        ("miss", "stream_cut"),
        ("coalesced", "stream_cut"),
    ]


async def test_a_response_too_large_for_memory_is_shared_once_stored(
    aiohttp_client: Any, fake_upstream: FakeUpstream, make_settings: Callable[..., Any]
) -> None:
    from gateway.admin import accounts
    from gateway.app import create_app

    settings = make_settings(
        upstream_url=fake_upstream.url, cache_enabled=True, response_memory_bytes=64
    )
    gateway = await aiohttp_client(create_app(settings))
    store = gateway.app[SERVICES].store
    await accounts.create_team(store, accounts.TeamCreate(name="t"))
    sdk = sdk_for(gateway, (await accounts.create_key(store, accounts.KeyCreate(team="t"))).secret)
    slow = {"extra_headers": {"x-simulator-fault": "slow:200"}}
    results = await asyncio.gather(*(generate_raw(sdk, **slow) for _ in range(3)))
    assert sorted(r[0] for r in results) == ["coalesced", "coalesced", "miss"]
    assert len({r[2] for r in results}) == 1
    assert len(fake_upstream.requests) == 1


async def test_refusals_say_bypass(gateway: Any) -> None:
    response = await gateway.post("/v1/images/generations", json=PROMPT)
    assert response.status == 401
    assert response.headers["x-gateway-cache"] == "bypass"


async def test_a_cache_that_cannot_write_costs_only_the_entry(
    sdk: openai.AsyncOpenAI, gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    async def no_tee(*args: Any, **kwargs: Any) -> Any:
        disk_full()

    files = gateway.app[SERVICES].cache.files
    monkeypatch.setattr(files, "_write", disk_full)
    monkeypatch.setattr(files, "new_tee", no_tee)
    assert (await generate_raw(sdk))[:2] == ("miss", LOW_COST)
    await stored(gateway)
    assert (await generate_raw(sdk))[0] == "miss"
    events = await stream_events(sdk)
    assert events[-1][0] == "image_generation.completed"
    assert (await gateway.app[SERVICES].cache.stats())["entries"] == 0
