"""Issue 10, part 2 and 4: usage is read wherever upstream puts it, never $0 by accident; streams
lose no whole event. An upstream scripted byte for byte plays the API (and the odd answers it
may give); expected charges are worked out here from the shipped rates, not by the gateway."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import openai
import pytest
from aiohttp.test_utils import TestClient

from gateway.admin import accounts
from gateway.app import create_app
from gateway.runtime.state import SERVICES
from gateway.settings import Settings
from tests.conftest import UPSTREAM_KEY, Reply, ScriptedUpstream, auth

GEN = "/v1/images/generations"
# gpt-image-1.5 per token, in nano-dollars: text in 5.00/1M = 5_000, image out 32.00/1M = 32_000.
TEXT_IN, IMAGE_OUT = 5_000, 32_000
BIG_IMAGE = base64.b64encode(b"\x89PNG" + bytes(600_000)).decode()


def usage(text: int, output: int, *, as_float: bool = False) -> dict[str, Any]:
    number: Callable[[int], Any] = float if as_float else int
    return {
        "input_tokens": number(text),
        "output_tokens": number(output),
        "total_tokens": number(text + output),
        "input_tokens_details": {"text_tokens": number(text), "image_tokens": number(0)},
    }


def event(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps({'type': name, **payload})}\n\n".encode()


async def client_for(
    aiohttp_client: Any, make_settings: Callable[..., Settings], upstream: ScriptedUpstream
) -> tuple[TestClient[Any, Any], str]:
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(make_settings(upstream_url=upstream.url))
    )
    store = client.app[SERVICES].store
    await accounts.create_team(store, accounts.TeamCreate(name="t"))
    issued = await accounts.create_key(store, accounts.KeyCreate(team="t"))
    return client, issued.secret


async def rows(client: TestClient[Any, Any]) -> list[tuple[Any, ...]]:
    return list(
        await client.app[SERVICES].store._all(
            "SELECT outcome, cost_nanos, estimate_nanos, images, image_output_tokens FROM ledger"
            " ORDER BY id"
        )
    )


@pytest.fixture
async def setup(
    aiohttp_client: Any, make_settings: Callable[..., Settings], scripted_upstream: ScriptedUpstream
) -> tuple[TestClient[Any, Any], str, ScriptedUpstream]:
    client, key = await client_for(aiohttp_client, make_settings, scripted_upstream)
    return client, key, scripted_upstream


BODY = {"model": "gpt-image-1.5", "prompt": "a red kite", "quality": "low"}


@pytest.mark.parametrize("usage_first", [True, False])
@pytest.mark.parametrize("as_float", [False, True])
async def test_usage_anywhere_and_whole_floats_are_charged_exactly(
    setup: Any, usage_first: bool, as_float: bool
) -> None:
    client, key, upstream = setup
    members = [("usage", usage(7, 1632, as_float=as_float)), ("data", [{"b64_json": BIG_IMAGE}])]
    if not usage_first:
        members.reverse()
    upstream.replies.append(Reply(json.dumps({"created": 1, **dict(members)}).encode()))
    response = await client.post(GEN, json=BODY, headers=auth(key))
    assert response.status == 200
    expected = 7 * TEXT_IN + 1632 * IMAGE_OUT
    assert response.headers["x-gateway-cost-usd"] == f"{expected / 1e9:.6f}".rstrip("0")
    assert (await rows(client))[0][:2] == ("ok", expected)


async def test_a_200_without_usage_is_charged_its_estimate_and_counted(
    setup: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client, key, upstream = setup
    upstream.replies.append(Reply(json.dumps({"created": 1, "data": [{"b64_json": "x"}]}).encode()))
    response = await client.post(GEN, json=BODY, headers=auth(key))
    assert response.status == 200
    ((outcome, cost, estimate, _, _),) = await rows(client)
    assert outcome == "usage_missing"
    assert cost == estimate > 0
    assert "without usage" in caplog.text
    metrics = client.app[SERVICES].metrics
    assert metrics.usage_missing.labels("gpt-image-1.5")._value.get() == 1


async def test_an_upstream_error_passed_through_is_recorded_as_one(setup: Any) -> None:
    client, key, upstream = setup
    error = {"error": {"message": "bad size", "type": "invalid_request_error", "param": "size"}}
    upstream.replies.append(Reply(json.dumps(error).encode(), status=400))
    response = await client.post(GEN, json=BODY, headers=auth(key))
    assert response.status == 400
    assert (await rows(client))[0][:2] == ("upstream_error", 0)


async def test_per_image_models_are_charged_for_the_images_returned(setup: Any) -> None:
    client, key, upstream = setup
    two = {"created": 1, "data": [{"url": "https://x/1.png"}, {"url": "https://x/2.png"}]}
    upstream.replies.append(Reply(json.dumps(two).encode()))
    body = {"model": "dall-e-2", "prompt": "p", "n": 3, "size": "256x256"}
    response = await client.post(GEN, json=body, headers=auth(key))
    assert response.status == 200
    outcome, cost, estimate, images, _ = (await rows(client))[0]
    assert (outcome, images, cost) == ("ok", 2, 2 * 16_000_000)  # 2 x $0.016, not 3
    assert estimate == 3 * 16_000_000


async def test_token_usage_from_a_per_image_model_is_charged_at_token_prices(setup: Any) -> None:
    client, key, upstream = setup
    answer = {"created": 1, "data": [{"b64_json": "x"}], "usage": usage(10, 1000)}
    upstream.replies.append(Reply(json.dumps(answer).encode()))
    body = {"model": "dall-e-2", "prompt": "p", "size": "256x256"}
    response = await client.post(GEN, json=body, headers=auth(key))
    assert response.status == 200
    # The dearest image model the table knows is gpt-image-1 (text in 5.00, image out 40.00).
    assert (await rows(client))[0][1] == 10 * 5_000 + 1000 * 40_000


async def test_a_completed_event_with_usage_before_a_large_image_is_charged(
    setup: Any,
) -> None:
    client, key, upstream = setup
    completed = event("image_generation.completed", {"usage": usage(3, 272), "b64_json": BIG_IMAGE})
    upstream.replies.append(
        Reply(headers={"Content-Type": "text/event-stream"}, chunks=[completed])
    )
    response = await client.post(GEN, json={**BODY, "stream": True}, headers=auth(key))
    text = await response.text()
    assert "gateway-cost-usd=" in text
    assert (await rows(client))[0][:2] == ("ok", 3 * TEXT_IN + 272 * IMAGE_OUT)


async def test_the_upstream_key_echoed_in_an_error_never_reaches_the_client(setup: Any) -> None:
    client, key, upstream = setup
    echo = {"error": {"message": f"Incorrect API key provided: {UPSTREAM_KEY}.", "type": "x"}}
    upstream.replies.append(
        Reply(json.dumps(echo).encode(), status=403, headers={"x-echo": f"key={UPSTREAM_KEY}"})
    )
    response = await client.post(GEN, json=BODY, headers=auth(key))
    body = await response.read()
    assert response.status == 403
    assert UPSTREAM_KEY.encode() not in body and b"[redacted]" in body
    assert UPSTREAM_KEY not in response.headers["x-echo"]


async def test_a_stream_cut_right_after_an_event_delivers_and_charges_it(setup: Any) -> None:
    """aiohttp's reader raises before handing out bytes it already holds: an event that
    arrives with the cut, while the relay is busy sending the one before, must still reach the
    client and be charged (30 runs, none lost)."""
    client, key, upstream = setup
    first = event("image_generation.partial_image", {"b64_json": BIG_IMAGE * 12})
    second = event("image_generation.partial_image", {"b64_json": "AAAA", "partial_image_index": 1})
    for _ in range(30):
        upstream.replies.append(
            Reply(headers={"Content-Type": "text/event-stream"}, chunks=[first, second], cut=True)
        )
        response = await client.post(
            GEN, json={**BODY, "stream": True, "partial_images": 2}, headers=auth(key)
        )
        text = await response.text()
        assert text.count("event: image_generation.partial_image") == 2
        assert text.index('"partial_image_index": 1') < text.index("stream_cut")
    ledger = await rows(client)
    assert len(ledger) == 30
    # The two partial images, and the input upstream read: the prompt's 10 bytes as text.
    prompt = len(BODY["prompt"])
    assert {row[:2] for row in ledger} == {("stream_cut", 2 * 100 * IMAGE_OUT + prompt * TEXT_IN)}


async def test_a_stream_of_two_images_cut_after_the_first_is_a_cut(setup: Any) -> None:
    client, key, upstream = setup
    first = event("image_generation.completed", {"usage": usage(3, 272), "b64_json": "AAAA"})
    partial = event("image_generation.partial_image", {"b64_json": "AAAA"})
    upstream.replies.append(
        Reply(headers={"Content-Type": "text/event-stream"}, chunks=[first, partial], cut=True)
    )
    body = {**BODY, "stream": True, "n": 2, "partial_images": 1}
    response = await client.post(GEN, json=body, headers=auth(key))
    text = await response.text()
    assert "stream_cut" in text
    outcome, cost, _, images, _ = (await rows(client))[0]
    # The first image's usage, and the partial image of the second that arrived.
    assert (outcome, images, cost) == ("stream_cut", 1, 3 * TEXT_IN + (272 + 100) * IMAGE_OUT)


async def test_the_sdk_sees_an_exact_cost_when_usage_comes_first(setup: Any) -> None:
    client, key, upstream = setup
    answer = {"usage": usage(5, 400), "created": 1, "data": [{"b64_json": BIG_IMAGE}]}
    upstream.replies.append(Reply(json.dumps(answer).encode()))
    sdk = openai.AsyncOpenAI(base_url=str(client.make_url("/v1")), api_key=key, max_retries=0)
    async with sdk:
        raw = await sdk.images.with_raw_response.generate(
            model="gpt-image-1.5", prompt="a red kite", quality="low"
        )
    result = raw.parse()
    assert result.usage is not None and result.usage.output_tokens == 400
    assert raw.headers["x-gateway-cost-usd"] == f"{(5 * TEXT_IN + 400 * IMAGE_OUT) / 1e9:f}".rstrip(
        "0"
    )


async def test_salvage_takes_what_the_reader_holds_when_the_connection_broke() -> None:
    """The mechanism behind the test above, made deterministic: data fed, then the connection's
    error set before the relay reads again. aiohttp's reader raises and would lose the data."""
    import asyncio

    import aiohttp
    from aiohttp.base_protocol import BaseProtocol

    from gateway.proxy.relay import salvage_buffered

    loop = asyncio.get_running_loop()
    reader = aiohttp.StreamReader(BaseProtocol(loop), 2**16, loop=loop)
    reader.feed_data(b"event: a\ndata: {}\n\n")
    reader.set_exception(aiohttp.ClientPayloadError("cut"))
    with pytest.raises(aiohttp.ClientPayloadError):
        await reader.readany()
    assert salvage_buffered(reader) == b"event: a\ndata: {}\n\n"
    assert salvage_buffered(reader) == b""
