"""Issue 22: nothing one request or one odd upstream answer can take down. Numbers past what the
books hold are refused or charged at the bound; a journal row the store refuses is set aside;
upstream answers are bounded (body, event, lifetime, a client nobody else waits for); a client
body in an encoding the gateway cannot read is refused. Driven through the official SDK where a
user would see the answer, and through a scripted upstream that plays the odd answers."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from gateway.admin import accounts
from gateway.app import create_app
from gateway.money import MAX_REQUEST_NANOS
from gateway.runtime.lifecycle import _settle_the_books
from gateway.runtime.state import SERVICES
from gateway.settings import Settings
from gateway.store.base import LedgerRow
from tests.conftest import FakeUpstream, Reply, ScriptedUpstream, auth
from tests.e2e.test_cache import sdk_for
from tests.e2e.test_usage_reading import BODY, GEN, IMAGE_OUT, TEXT_IN, event, usage

SDK_BODY: dict[str, Any] = dict(BODY)  # as keyword arguments of the SDK's generate


async def gateway_for(aiohttp_client: Any, settings: Settings) -> tuple[Any, str]:
    client = await aiohttp_client(create_app(settings))
    store = client.app[SERVICES].store
    await accounts.create_team(store, accounts.TeamCreate(name="t"))
    return client, (await accounts.create_key(store, accounts.KeyCreate(team="t"))).secret


@pytest.fixture
async def scripted(
    aiohttp_client: Any, make_settings: Callable[..., Settings], scripted_upstream: ScriptedUpstream
) -> tuple[Any, str]:
    """A gateway in front of the scripted upstream, and a key of a team without a budget."""
    return await gateway_for(aiohttp_client, make_settings(upstream_url=scripted_upstream.url))


async def ledger(client: Any) -> list[tuple[Any, ...]]:
    return [
        tuple(row)
        for row in await client.app[SERVICES].store._all(
            "SELECT outcome, error_code, cost_nanos, image_output_tokens FROM ledger ORDER BY id"
        )
    ]


async def test_a_size_past_any_image_is_refused_before_upstream(
    gateway: Any, key: str, fake_upstream: FakeUpstream
) -> None:
    sdk = sdk_for(gateway, key)
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk.images.generate(
            model="gpt-image-2", prompt="x", size="9999999999999x9999999999999"
        )
    assert refused.value.code == "invalid_value" and refused.value.param == "size"
    assert fake_upstream.requests == []
    # The refusal's row went into the store like any other: nothing waits to trip a restart.
    assert await gateway.app[SERVICES].journal.pending() == 0
    assert [row[0] for row in await ledger(gateway)] == ["invalid"]
    await sdk.close()


async def test_usage_past_the_bounds_is_charged_at_the_bound_and_flagged(
    scripted: tuple[Any, str], scripted_upstream: ScriptedUpstream
) -> None:
    client, key = scripted
    huge = {"created": 1, "data": [{"b64_json": "AAAA"}], "usage": usage(7, 10**15)}
    scripted_upstream.replies.append(Reply(json.dumps(huge).encode()))
    sdk = sdk_for(client, key)
    raw = await sdk.images.with_raw_response.generate(**SDK_BODY)
    assert raw.headers["x-gateway-cost-usd"] == "1000000.00"
    assert await ledger(client) == [("ok", "usage_out_of_range", MAX_REQUEST_NANOS, 10**12)]
    assert await client.app[SERVICES].journal.pending() == 0  # the store took it
    metrics = client.app[SERVICES].metrics
    assert metrics.usage_out_of_range.labels("gpt-image-1.5")._value.get() == 1
    # The books settle as ever afterwards: nothing is retried, nothing blocks housekeeping.
    await _settle_the_books(client.app)
    await sdk.images.generate(**SDK_BODY)
    assert len(await ledger(client)) == 2
    await sdk.close()


async def test_a_journal_row_the_store_refuses_is_quarantined_and_blocks_nothing(
    aiohttp_client: Any, make_settings: Callable[..., Settings], fake_upstream: FakeUpstream
) -> None:
    settings = make_settings(upstream_url=fake_upstream.url)
    client, key = await gateway_for(aiohttp_client, settings)
    store = client.app[SERVICES].store
    good = await _journaled_row(client, "req_good")
    bad = dataclasses.replace(good, request_id="req_bad", cost_nanos=10**20)  # past int64
    journal = client.app[SERVICES].journal
    await journal.append(good)
    await journal.append(bad)
    await journal.append(dataclasses.replace(good, request_id="req_after"))
    await client.close()

    # A gateway starting on this data dir replays the journal at start: it starts all the same.
    client = await aiohttp_client(create_app(settings))
    store = client.app[SERVICES].store
    ids = [row[0] for row in await store._all("SELECT request_id FROM ledger ORDER BY id")]
    assert ids == ["req_good", "req_after"]  # the row after the bad one is in
    journal = client.app[SERVICES].journal
    assert await journal.pending() == 0 and await journal.quarantined() == 1
    quarantined = json.loads(next(journal.quarantine_dir.glob("*.jsonl")).read_text())
    assert quarantined["row"]["request_id"] == "req_bad"
    # SQLite's words or PostgreSQL's for a number past 64 bits
    assert any(word in quarantined["error"] for word in ("OverflowError", "int64"))
    assert client.app[SERVICES].metrics.ledger_quarantined._value.get() == 1
    ready = await client.get("/readyz")
    report = await ready.json()
    assert ready.status == 200  # degraded, not down
    assert report["degraded"]["quarantine"].startswith("1 ledger rows the store refused")
    response = await client.post(GEN, json={**BODY, "model": "gpt-image-1.5"}, headers=auth(key))
    assert response.status == 200


async def _journaled_row(client: Any, request_id: str) -> LedgerRow:
    """A plausible row for the key's team, as a failed store write would have journaled it."""
    store = client.app[SERVICES].store
    key = (await store.list_keys())[0]
    return LedgerRow(
        request_id=request_id, created_at="2026-12-06T08:00:00.000+00:00", day="2026-12-06",
        week="2026-W49", month="2026-12", key_id=key.id, team_id=key.team_id,
        endpoint="generations", model="gpt-image-1.5", size=None, quality="low", n=1,
        stream=False, status=200, outcome="ok", cache_status="bypass", text_input_tokens=1,
        cached_text_input_tokens=0, image_input_tokens=0, cached_image_input_tokens=0,
        image_output_tokens=272, text_output_tokens=0, images=1, estimate_nanos=10,
        cost_nanos=10, saved_nanos=0, latency_ms=1.0, upstream_request_id=None,
        price_version=None, reservation_id=None,
    )  # fmt: skip


STREAM = {**BODY, "stream": True, "partial_images": 1}
SSE = {"Content-Type": "text/event-stream"}


async def test_an_event_without_end_is_cut_at_its_bound(
    aiohttp_client: Any,
    make_settings: Callable[..., Settings],
    scripted_upstream: ScriptedUpstream,
) -> None:
    settings = make_settings(upstream_url=scripted_upstream.url, upstream_max_event_bytes=1 << 20)
    client, key = await gateway_for(aiohttp_client, settings)
    endless = [b"event: image_generation.partial_image\ndata: " + b"A" * 256 * 1024] + [
        b"A" * 256 * 1024
        for _ in range(40)  # 10 MiB, never a blank line
    ]
    scripted_upstream.replies.append(Reply(headers=SSE, chunks=endless))
    response = await client.post(GEN, json=STREAM, headers=auth(key))
    text = await response.text()
    assert "stream_cut" in text and "GATEWAY_UPSTREAM_MAX_EVENT_BYTES" in text
    ((outcome, _, cost, _),) = await ledger(client)
    # No usage came: the input the request holds (10 bytes of prompt) is charged.
    assert (outcome, cost) == ("stream_cut", len(BODY["prompt"]) * TEXT_IN)


async def test_a_gzip_bomb_answer_is_cut_at_the_body_bound(
    aiohttp_client: Any,
    make_settings: Callable[..., Settings],
    scripted_upstream: ScriptedUpstream,
) -> None:
    settings = make_settings(upstream_url=scripted_upstream.url, upstream_max_body_bytes=8 << 20)
    client, key = await gateway_for(aiohttp_client, settings)
    bomb = gzip.compress(b"0" * (256 << 20), compresslevel=9)  # 256 MiB from ~250 KB
    assert len(bomb) < 1 << 20
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    scripted_upstream.replies.append(Reply(bomb, headers=headers))
    sdk = sdk_for(client, key)
    with pytest.raises(openai.APIStatusError) as failed:
        await sdk.images.generate(**SDK_BODY)
    assert failed.value.status_code == 502 and "GATEWAY_UPSTREAM_MAX_BODY_BYTES" in str(
        failed.value
    )
    assert [row[:2] for row in await ledger(client)] == [("upstream_error", "upstream_unreachable")]
    tmp = client.app[SERVICES].settings.spool_dir
    assert list(tmp.glob("*")) == []  # nothing of it left on disk
    await sdk.close()


async def test_an_error_only_stream_is_charged_its_own_usage(
    scripted: tuple[Any, str], scripted_upstream: ScriptedUpstream
) -> None:
    client, key = scripted
    error = {"error": {"message": "moderation", "type": "invalid_request_error", "code": "x"}}
    scripted_upstream.replies.append(Reply(headers=SSE, chunks=[event("error", error)]))
    with_usage = {**error, "usage": usage(10, 0)}
    scripted_upstream.replies.append(Reply(headers=SSE, chunks=[event("error", with_usage)]))
    for _ in range(2):
        response = await client.post(GEN, json=STREAM, headers=auth(key))
        assert "event: error" in await response.text()
    assert [row[::2] for row in await ledger(client)] == [
        ("upstream_error", 0),  # no usage: nothing (not the whole estimate)
        ("upstream_error", 10 * TEXT_IN),  # what its usage says
    ]


@pytest.mark.parametrize(
    ("shape", "outputs"),
    [("per image", [272, 272, 272]), ("last is the total", [272, 272, 816])],
)
async def test_a_stream_of_n_images_is_charged_each_image_once(
    scripted: tuple[Any, str], scripted_upstream: ScriptedUpstream, shape: str, outputs: list[int]
) -> None:
    client, key = scripted
    completed = [
        event("image_generation.completed", {"b64_json": "AAAA", "usage": usage(3, out)})
        for out in outputs
    ]
    scripted_upstream.replies.append(Reply(headers=SSE, chunks=completed))
    response = await client.post(
        GEN, json={**BODY, "stream": True, "n": 3, "prompt": "abc"}, headers=auth(key)
    )
    await response.read()
    # Either way, three images of 272 tokens and the 3-token prompt once.
    assert await ledger(client) == [("ok", None, 3 * TEXT_IN + 816 * IMAGE_OUT, 816)]


async def test_a_stream_outliving_its_bound_is_cut_and_charged(
    aiohttp_client: Any,
    make_settings: Callable[..., Settings],
    simulator: Callable[..., Any],
) -> None:
    upstream: FakeUpstream = await simulator(partial_interval_ms=400)
    settings = make_settings(upstream_url=upstream.url, upstream_max_stream_s=0.6)
    client, key = await gateway_for(aiohttp_client, settings)
    started = time.monotonic()
    response = await client.post(
        GEN, json={**BODY, "stream": True, "partial_images": 3}, headers=auth(key)
    )
    text = await response.text()
    assert time.monotonic() - started < 2.5
    assert "longer than 0.6 s" in text
    ((outcome, _, cost, _),) = await ledger(client)
    assert outcome == "stream_cut" and cost > 0


async def test_a_never_ending_stream_is_not_read_on_once_its_client_left(
    aiohttp_client: Any, aiohttp_server: Any, make_settings: Callable[..., Settings]
) -> None:
    closed = asyncio.Event()

    async def forever(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers=SSE)
        await response.prepare(request)
        partial = event("image_generation.partial_image", {"b64_json": "AAAA"})
        try:
            for _ in range(600):  # at most a minute
                await response.write(partial)
                await asyncio.sleep(0.1)
        except (ConnectionError, asyncio.CancelledError):
            closed.set()
            raise
        return response

    app = web.Application()
    app.router.add_post("/v1/images/generations", forever)
    upstream = await aiohttp_server(app)
    settings = make_settings(upstream_url=str(upstream.make_url("/v1")))
    client, key = await gateway_for(aiohttp_client, settings)
    async with aiohttp.ClientSession() as session:
        response = await session.post(client.make_url(GEN), json=STREAM, headers=auth(key))
        await response.content.readuntil(b"\n\n")
        response.close()  # the client leaves
    await asyncio.wait_for(closed.wait(), timeout=5)  # the gateway hung up on upstream
    for _ in range(50):
        if rows := await ledger(client):
            break
        await asyncio.sleep(0.1)
    ((outcome, _, cost, _),) = rows
    estimate = (await client.app[SERVICES].store._all("SELECT estimate_nanos FROM ledger"))[0][0]
    assert (outcome, cost) == ("stream_cut", estimate)  # upstream may still finish and bill it
    assert (await client.app[SERVICES].store._all("SELECT COUNT(*) FROM reservations"))[0][0] == 0


async def test_a_client_body_in_an_unreadable_encoding_is_refused_before_upstream(
    gateway: Any, key: str, fake_upstream: FakeUpstream
) -> None:
    headers = {**auth(key), "Content-Type": "application/json"}
    # (The server closes a connection whose body it could not read: a new one for the next.)
    broken = {**headers, "Content-Encoding": "gzip", "Connection": "close"}
    not_gzip = await gateway.post(GEN, data=b'{"model": "x"}', headers=broken)
    assert not_gzip.status == 400
    assert (await not_gzip.json())["error"]["code"] == "invalid_content_encoding"
    unknown = await gateway.post(
        GEN, data=b"{}", headers={**headers, "Content-Encoding": "compress"}
    )
    assert (await unknown.json())["error"]["code"] == "unsupported_content_encoding"
    assert fake_upstream.requests == []

    body = json.dumps({"model": "gpt-image-1.5", "prompt": "zipped", "quality": "low"}).encode()
    zipped = await gateway.post(
        GEN, data=gzip.compress(body), headers={**headers, "Content-Encoding": "gzip"}
    )
    assert zipped.status == 200
    (sent,) = fake_upstream.requests  # decoded, without the header that no longer fits it
    assert sent.json["prompt"] == "zipped" and "content-encoding" not in sent.headers
