"""Cache bodies in an S3-compatible object store (gateway/cache/objects.py), against a real S3 HTTP
server (moto's): replicas on one PostgreSQL share them, what is served is what was stored, a
missing or corrupt object is never served, and purges remove objects."""

from __future__ import annotations

import base64
import hashlib
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest
from aiobotocore.session import get_session

from gateway.admin import accounts
from gateway.app import create_app
from gateway.runtime.state import SERVICES
from gateway.settings import Settings
from tests.conftest import FakeUpstream
from tests.e2e.test_cache import stored as stored_on
from tests.s3_server import BUCKET, S3Server

# Starts the servers it tests itself (or needs no fixture's database): run once, not again on
# PostgreSQL.
pytestmark = pytest.mark.one_pass

REQUEST: dict[str, Any] = {"model": "gpt-image-1", "prompt": "a puffin", "quality": "low"}


async def objects(server: S3Server) -> dict[str, bytes]:
    """Every object in the bucket: key → content."""
    found = {}
    async with get_session().create_client("s3", endpoint_url=server.endpoint_url) as client:
        listing = await client.list_objects_v2(Bucket=BUCKET)
        for item in listing.get("Contents", []):
            response = await client.get_object(Bucket=BUCKET, Key=item["Key"])
            async with response["Body"] as body:
                found[item["Key"]] = await body.read()
    return found


async def replicas(
    aiohttp_client: Any,
    make_settings: Callable[..., Settings],
    upstream: FakeUpstream,
    server: S3Server,
    tmp_path: Path,
    database_url: str,
) -> tuple[list[Any], list[openai.AsyncOpenAI]]:
    gateways = [
        await aiohttp_client(
            create_app(
                make_settings(
                    upstream_url=upstream.url,
                    database_url=database_url,
                    data_dir=tmp_path / f"replica{i}",
                    cache_enabled=True,
                    cache_store=f"s3://{BUCKET}/gateway",
                    cache_s3_endpoint_url=server.endpoint_url,
                    cache_inline_max_bytes=0,  # every body an object
                )
            )
        )
        for i in range(2)
    ]
    store = gateways[0].app[SERVICES].store
    await accounts.create_team(store, accounts.TeamCreate(name="t"))
    key = (await accounts.create_key(store, accounts.KeyCreate(team="t"))).secret
    sdks = [
        openai.AsyncOpenAI(base_url=str(g.make_url("/v1")), api_key=key, max_retries=0, timeout=30)
        for g in gateways
    ]
    return gateways, sdks


async def stored(gateways: list[Any]) -> None:
    for gateway in gateways:
        await stored_on(gateway)


async def test_replicas_share_bodies_through_the_object_store(
    aiohttp_client: Any,
    make_settings: Callable[..., Settings],
    fake_upstream: FakeUpstream,
    s3_bucket: S3Server,
    pg_url: str,
    tmp_path: Path,
) -> None:
    gateways, (first, second) = await replicas(
        aiohttp_client, make_settings, fake_upstream, s3_bucket, tmp_path, pg_url
    )
    miss = await first.images.with_raw_response.generate(**REQUEST)
    stream = await first.images.generate(**REQUEST, stream=True, partial_images=1)
    streamed = [event.type async for event in stream]
    await stored(gateways)
    bucket = await objects(s3_bucket)
    index = {sha for sha, _ in await gateways[0].app[SERVICES].store.cache.bodies()}
    assert set(bucket) == {f"gateway/bodies/{sha}" for sha in index} and len(index) == 2
    for name, content in bucket.items():  # each object is what its name says
        assert hashlib.sha256(content).hexdigest() == name.rsplit("/", 1)[-1]
    assert not list((tmp_path / "replica0" / "cache" / "bodies").glob("*/*"))  # no local copy

    hit = await second.images.with_raw_response.generate(**REQUEST)
    assert (miss.headers["x-gateway-cache"], hit.headers["x-gateway-cache"]) == ("miss", "hit")
    image = miss.parse().data[0].b64_json
    assert hit.parse().data[0].b64_json == image
    replay = await second.images.generate(**REQUEST, stream=True, partial_images=1)
    assert [event.type async for event in replay] == streamed
    assert len(fake_upstream.requests) == 2
    assert base64.b64decode(image or "")

    purged = await gateways[1].app[SERVICES].cache.purge(team_id=None, key_id=None)
    assert purged == 2 and await objects(s3_bucket) == {}  # the sweep removed the objects
    for sdk in (first, second):
        await sdk.close()


async def test_a_missing_or_corrupt_object_is_never_served(
    aiohttp_client: Any,
    make_settings: Callable[..., Settings],
    fake_upstream: FakeUpstream,
    s3_bucket: S3Server,
    pg_url: str,
    tmp_path: Path,
) -> None:
    gateways, (first, second) = await replicas(
        aiohttp_client, make_settings, fake_upstream, s3_bucket, tmp_path, pg_url
    )
    original = await first.images.with_raw_response.generate(**REQUEST)
    await stored(gateways)
    (name,) = await objects(s3_bucket)
    async with get_session().create_client("s3", endpoint_url=s3_bucket.endpoint_url) as client:
        await client.delete_object(Bucket=BUCKET, Key=name)
    assert (await second.images.with_raw_response.generate(**REQUEST)).headers[
        "x-gateway-cache"
    ] == "miss"  # gone: a miss, and its entry dropped; the answer is stored again
    await stored(gateways)
    again = await first.images.with_raw_response.generate(**REQUEST)
    assert again.headers["x-gateway-cache"] == "hit"
    assert again.parse().data == original.parse().data

    # Same name, other bytes (written behind the gateway's back): verify finds and drops it.
    (name,) = await objects(s3_bucket)
    async with get_session().create_client("s3", endpoint_url=s3_bucket.endpoint_url) as client:
        await client.put_object(
            Bucket=BUCKET, Key=name, Body=b"x" * len((await objects(s3_bucket))[name])
        )
    report = await gateways[0].app[SERVICES].cache.verify()
    assert report == {"checked": 1, "corrupt": 1, "entries_dropped": 1}
    assert (await first.images.with_raw_response.generate(**REQUEST)).headers[
        "x-gateway-cache"
    ] == "miss"
    assert len(fake_upstream.requests) == 3
    for sdk in (first, second):
        await sdk.close()


async def test_an_object_store_that_hangs_makes_a_hit_a_miss_within_the_timeout(
    aiohttp_client: Any,
    make_settings: Callable[..., Settings],
    fake_upstream: FakeUpstream,
    s3_bucket: S3Server,
    tmp_path: Path,
) -> None:
    settings = make_settings(
        upstream_url=fake_upstream.url, cache_enabled=True, cache_store=f"s3://{BUCKET}/gw",
        cache_s3_endpoint_url=s3_bucket.endpoint_url, cache_inline_max_bytes=0,
        database_timeout_s=1,
    )  # fmt: skip
    gateway = await aiohttp_client(create_app(settings))
    store = gateway.app[SERVICES].store
    await accounts.create_team(store, accounts.TeamCreate(name="t"))
    key = (await accounts.create_key(store, accounts.KeyCreate(team="t"))).secret
    sdk = openai.AsyncOpenAI(
        base_url=str(gateway.make_url("/v1")), api_key=key, max_retries=0, timeout=30
    )
    await sdk.images.generate(**REQUEST)
    await stored_on(gateway)
    assert s3_bucket.process is not None
    s3_bucket.process.send_signal(signal.SIGSTOP)  # hung: connects, never answers
    try:
        started = time.monotonic()
        raw = await sdk.images.with_raw_response.generate(**REQUEST)
        assert raw.headers["x-gateway-cache"] == "miss"  # answered all the same, from upstream
        assert time.monotonic() - started < 4  # the timeout (1 s, twice at most), not minutes
        ready = await (await gateway.get("/readyz")).json()
        assert ready["status"] == "ready"
        assert "unreachable" in ready["degraded"]["object_store"]
    finally:
        s3_bucket.process.send_signal(signal.SIGCONT)
    again = await sdk.images.with_raw_response.generate(**REQUEST)
    assert again.headers["x-gateway-cache"] == "hit"  # the entry was kept: back by itself
    assert "degraded" not in await (await gateway.get("/readyz")).json()
    await sdk.close()
