"""The built-in OpenAI Images API simulator: responses, usage, streams, faults, recording."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.edge.imageinfo import image_dimensions, image_format
from simulator import (
    SIMULATOR_STATE,
    SimulatorConfig,
    SimulatorState,
    add_simulator_arguments,
    config_from_args,
    create_simulator_app,
)
from simulator.images import encode_png
from simulator.state import FILE_CACHE_SIZE
from simulator.usage import image_input_tokens, output_tokens_per_image

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]
GEN = "/v1/images/generations"
EDIT = "/v1/images/edits"
VARIATION = "/v1/images/variations"


@pytest.fixture
def make_client(aiohttp_client: Any) -> MakeClient:
    async def make(**config: Any) -> Client:
        client: Client = await aiohttp_client(create_simulator_app(SimulatorConfig(**config)))
        return client

    return make


def _state(client: Client) -> SimulatorState:
    app = client.app
    assert app is not None
    return app[SIMULATOR_STATE]


def _png_size(b64: str) -> tuple[int, int] | None:
    data = base64.b64decode(b64)
    assert image_format(data) == "png"
    return image_dimensions(data)


def _png_header(width: int, height: int) -> bytes:
    """Enough of a PNG for image_dimensions: the simulator only reads sizes from inputs."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\x00" * 20


def _events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        name_line, data_line = block.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: ")
        events.append((name_line[7:], json.loads(data_line[6:])))
    return events


async def _wait_idle(client: Client) -> None:
    for _ in range(100):
        if _state(client).in_flight == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the simulator handler is still running")


# --- token model ------------------------------------------------------------------------------


def test_token_model_by_hand() -> None:
    assert output_tokens_per_image("low", 1024, 1536) == 408
    assert output_tokens_per_image("high", 1536, 1024) == 6208
    assert output_tokens_per_image("low", 2048, 2048) == 272 * 4  # area-scaled
    assert output_tokens_per_image("medium", 512, 512) == 264  # ceil(1056 / 4)
    assert output_tokens_per_image("medium", 100, 100) == 11  # ceil(1056 * 10000 / 1048576)
    assert image_input_tokens(64, 64) == 65 + 129  # small: one tile, never upscaled
    assert image_input_tokens(1024, 1024) == 65 + 129  # shortest side to 512: one tile
    assert image_input_tokens(2048, 4096) == 65 + 129 * 2  # 1024x2048 -> 512x1024
    # 3000 -> 2048 then 682.67 -> 512 gives 512x1536 exactly: 3 tiles, not 6 from float fuzz.
    assert image_input_tokens(1000, 3000) == 65 + 129 * 3
    assert image_input_tokens(300, 1400) == 65 + 129 * 3  # no scaling: 1 x 3 tiles


# --- generations ------------------------------------------------------------------------------


async def test_gpt_generation_returns_png_and_exact_usage(make_client: MakeClient) -> None:
    client = await make_client(image_px=40)
    body = {"model": "gpt-image-1", "prompt": "a" * 10, "quality": "low", "size": "1024x1536"}
    resp = await client.post(GEN, json=body)
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert re.fullmatch(r"req_[0-9a-f]{32}", resp.headers["x-request-id"])
    assert int(resp.headers["openai-processing-ms"]) >= 0
    assert resp.headers["openai-version"] == "2020-10-01"
    payload = await resp.json()
    assert isinstance(payload["created"], int) and abs(payload["created"] - time.time()) < 60
    assert len(payload["data"]) == 1
    assert _png_size(payload["data"][0]["b64_json"]) == (40, 40)
    assert payload["background"] == "opaque"
    assert payload["output_format"] == "png"
    assert payload["quality"] == "low"
    assert payload["size"] == "1024x1536"
    assert payload["usage"] == {
        "total_tokens": 411,
        "input_tokens": 3,
        "output_tokens": 408,
        "input_tokens_details": {"text_tokens": 3, "image_tokens": 0},
        "output_tokens_details": {"image_tokens": 408, "text_tokens": 0},
    }


@pytest.mark.parametrize(
    ("extra", "quality", "size", "output"),
    [
        ({}, "medium", "1024x1024", 1056),  # auto quality and size
        ({"quality": "high", "size": "1536x1024"}, "high", "1536x1024", 6208),
        ({"quality": "low", "size": "2048x2048"}, "low", "2048x2048", 1088),
        ({"quality": "ultra"}, "ultra", "1024x1024", 4160),  # unknown quality priced as high
        ({"quality": "xhigh"}, "xhigh", "1024x1024", 4160),  # gpt-image-1.5 has none: high
        ({"quality": "xhigh", "model": "gpt-image-2"}, "xhigh", "1024x1024", 6240),  # 1.5 x high
        ({"quality": "max", "model": "gpt-image-2.5-flare"}, "max", "1024x1024", 8320),  # 2 x
        ({"quality": "medium", "size": "512x512"}, "medium", "512x512", 264),
    ],
)
async def test_quality_and_size_resolution(
    make_client: MakeClient, extra: dict[str, Any], quality: str, size: str, output: int
) -> None:
    client = await make_client()
    body = {"model": "gpt-image-1.5", "prompt": "cat", **extra}
    resp = await client.post(GEN, json=body)
    payload = await resp.json()
    assert resp.status == 200, payload
    assert (payload["quality"], payload["size"]) == (quality, size)
    assert payload["usage"]["output_tokens"] == output
    assert payload["usage"]["input_tokens_details"]["text_tokens"] == 1


async def test_unknown_model_and_fields_are_accepted(make_client: MakeClient) -> None:
    client = await make_client()
    body = {
        "model": "gpt-image-2",
        "prompt": "a logo",
        "svg": True,
        "brand_kit": "acme",
        "quality": "ultra",
        "background": "transparent",
        "output_format": "webp",
    }
    resp = await client.post(GEN, json=body)
    payload = await resp.json()
    assert resp.status == 200, payload
    assert payload["usage"]["output_tokens"] == 4160
    assert (payload["background"], payload["output_format"]) == ("transparent", "webp")
    png = base64.b64decode(payload["data"][0]["b64_json"])
    assert png[25] == 6  # colour type RGBA: a transparent background has an alpha channel


async def test_same_request_same_bytes_and_different_prompt_different_bytes(
    make_client: MakeClient,
) -> None:
    client = await make_client()

    async def image(prompt: str) -> str:
        resp = await client.post(GEN, json={"model": "gpt-image-1", "prompt": prompt})
        b64: str = (await resp.json())["data"][0]["b64_json"]
        return b64

    first, again, other = await image("a red fox"), await image("a red fox"), await image("a cat")
    assert first == again
    assert first != other
    seeded = await make_client(seed=7)
    resp = await seeded.post(GEN, json={"model": "gpt-image-1", "prompt": "a red fox"})
    assert (await resp.json())["data"][0]["b64_json"] != first


async def test_n_images_are_distinct_and_usage_multiplies(make_client: MakeClient) -> None:
    client = await make_client()
    body = {"model": "gpt-image-1", "prompt": "abcdefgh", "n": 3, "quality": "low"}
    payload = await (await client.post(GEN, json=body)).json()
    images = [item["b64_json"] for item in payload["data"]]
    assert len(images) == 3 and len(set(images)) == 3
    assert payload["usage"]["output_tokens"] == 3 * 272
    assert payload["usage"]["input_tokens"] == 2
    assert payload["usage"]["total_tokens"] == 3 * 272 + 2


async def test_dalle2_default_url_is_served(make_client: MakeClient) -> None:
    client = await make_client()
    resp = await client.post(GEN, json={"prompt": "a lighthouse", "n": 2, "size": "256x256"})
    payload = await resp.json()
    assert resp.status == 200, payload
    assert set(payload) == {"created", "data"}  # dall-e-2: no usage, no echoes
    urls = [item["url"] for item in payload["data"]]
    assert len(set(urls)) == 2
    base = f"http://{client.server.host}:{client.server.port}/files/"
    assert all(url.startswith(base) and url.endswith(".png") for url in urls)
    image = await client.get(urls[0][len(base) - len("/files/") :])
    assert image.status == 200
    assert image.content_type == "image/png"
    assert image_dimensions(await image.read()) == (64, 64)
    missing = await client.get("/files/0123456789abcdef0123456789abcdef.png")
    assert missing.status == 404


async def test_dalle3_rules(make_client: MakeClient) -> None:
    client = await make_client()
    resp = await client.post(GEN, json={"model": "dall-e-3", "prompt": "x", "n": 2})
    assert resp.status == 400
    assert (await resp.json())["error"]["param"] == "n"
    body = {"model": "dall-e-3", "prompt": "a tower.", "response_format": "b64_json"}
    payload = await (await client.post(GEN, json=body)).json()
    item = payload["data"][0]
    assert "usage" not in payload
    assert _png_size(item["b64_json"]) == (64, 64)
    assert item["revised_prompt"].startswith("a tower")
    bad_size = await client.post(GEN, json={"model": "dall-e-3", "prompt": "x", "size": "256x256"})
    assert (await bad_size.json())["error"]["param"] == "size"


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": "gpt-image-1"}, "prompt", "missing_required_parameter"),
        ({"prompt": ""}, "prompt", "empty_string"),
        ({"prompt": 5}, "prompt", "invalid_type"),
        ({"prompt": "x", "n": 0}, "n", "integer_below_min_value"),
        ({"prompt": "x", "n": 11}, "n", "integer_above_max_value"),
        ({"prompt": "x", "n": "2"}, "n", "invalid_type"),
        ({"prompt": "x", "stream": True}, "stream", "invalid_value"),  # dall-e-2 by default
        ({"prompt": "x", "model": "gpt-image-1", "partial_images": 4}, "partial_images", None),
        ({"prompt": "x", "model": "gpt-image-1", "size": "big"}, "size", "invalid_value"),
        ({"prompt": "x", "response_format": "jpeg"}, "response_format", "invalid_value"),
    ],
)
async def test_invalid_requests_get_openai_errors(
    make_client: MakeClient, body: dict[str, Any], param: str, code: str | None
) -> None:
    client = await make_client()
    resp = await client.post(GEN, json=body)
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    else:
        assert error["code"] == "integer_above_max_value"


async def test_missing_prompt_exact_shape_and_malformed_json(make_client: MakeClient) -> None:
    client = await make_client()
    resp = await client.post(GEN, json={"model": "gpt-image-1"})
    assert await resp.json() == {
        "error": {
            "message": "Missing required parameter: 'prompt'.",
            "type": "invalid_request_error",
            "param": "prompt",
            "code": "missing_required_parameter",
        }
    }
    bad = await client.post(GEN, data=b'{"prompt": ', headers={"Content-Type": "application/json"})
    assert bad.status == 400
    error = (await bad.json())["error"]
    assert "could not parse the JSON body" in error["message"]
    assert error["param"] is None


async def test_unknown_v1_route_is_openai_404(make_client: MakeClient) -> None:
    client = await make_client(record=True)
    resp = await client.get("/v1/models")
    assert resp.status == 404
    assert (await resp.json())["error"]["message"] == "Invalid URL (GET /v1/models)"
    wrong_method = await client.get(GEN)
    assert wrong_method.status == 404
    assert [r.path for r in _state(client).requests] == ["/v1/models", GEN]


# --- edits and variations ---------------------------------------------------------------------


async def test_multipart_edit_records_exact_parts_and_counts_input_tokens(
    make_client: MakeClient,
) -> None:
    client = await make_client(record=True)
    # Bytes that a sloppy multipart parser would trim or split on must survive exactly.
    big = _png_header(2048, 4096) + b"\r\n\r\n"  # -> 512x1024: 2 tiles
    small = encode_png(64, 64, bytes(64 * 64 * 3), alpha=False)  # 1 tile
    mask = b"\r\n--not-the-boundary\r\n" + encode_png(8, 8, bytes(8 * 8 * 4), alpha=True)
    form = aiohttp.FormData()
    form.add_field("model", "gpt-image-1")
    form.add_field("image[]", big, filename="big.png", content_type="image/png")
    form.add_field("prompt", "merge these")
    form.add_field("image[]", small, filename="small.png", content_type="image/png")
    form.add_field("mask", mask, filename="mask.png", content_type="image/png")
    form.add_field("input_fidelity", "high")
    form.add_field("quality", "medium")
    form.add_field("size", "1536x1024")
    resp = await client.post(EDIT, data=form)
    payload = await resp.json()
    assert resp.status == 200, payload
    assert payload["usage"] == {
        "total_tokens": 3 + 323 + 194 + 4160 + 1568,
        "input_tokens": 3 + 323 + 194 + 4160,
        "output_tokens": 1568,
        "input_tokens_details": {"text_tokens": 3, "image_tokens": 323 + 194 + 4160},
        "output_tokens_details": {"image_tokens": 1568, "text_tokens": 0},
    }
    (recorded,) = _state(client).requests
    assert recorded.method == "POST" and recorded.path == EDIT
    assert recorded.content_type == "multipart/form-data"
    assert recorded.json is None
    assert recorded.fields == [
        ("model", "gpt-image-1"),
        ("prompt", "merge these"),
        ("input_fidelity", "high"),
        ("quality", "medium"),
        ("size", "1536x1024"),
    ]
    assert [(f.field, f.filename, f.content_type) for f in recorded.files] == [
        ("image[]", "big.png", "image/png"),
        ("image[]", "small.png", "image/png"),
        ("mask", "mask.png", "image/png"),
    ]
    assert [f.data for f in recorded.files] == [big, small, mask]
    assert recorded.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert len(recorded.body) == int(recorded.headers["content-length"])


async def test_single_image_multipart_edit_defaults_to_dalle2(make_client: MakeClient) -> None:
    client = await make_client()
    form = aiohttp.FormData()
    form.add_field("image", _png_header(512, 512), filename="a.png", content_type="image/png")
    form.add_field("prompt", "add a hat")
    payload = await (await client.post(EDIT, data=form)).json()
    assert "usage" not in payload and payload["data"][0]["url"].endswith(".png")


async def test_json_edit_with_references(make_client: MakeClient) -> None:
    client = await make_client(record=True)
    data_url = "data:image/png;base64," + base64.b64encode(_png_header(1400, 300)).decode()
    body = {
        "images": [{"image_url": data_url}, {"file_id": "file-abc"}],
        "mask": {"file_id": "file-mask"},
        "prompt": "abcde",
        "quality": "low",
    }
    resp = await client.post(EDIT, json=body)
    payload = await resp.json()
    assert resp.status == 200, payload
    # 1400x300 is not scaled: 3 x 1 tiles; the file id counts as 1024x1024: one tile after
    # scaling; the mask is free.
    image_tokens = (65 + 129 * 3) + (65 + 129)
    assert payload["usage"]["input_tokens_details"] == {
        "text_tokens": 2,
        "image_tokens": image_tokens,
    }
    assert payload["usage"]["output_tokens"] == 272  # default model gpt-image-1
    assert _state(client).requests[0].json == body
    both = await client.post(
        EDIT, json={"prompt": "x", "images": [{"image_url": data_url, "file_id": "f"}]}
    )
    assert (await both.json())["error"]["param"] == "images[0]"
    no_images = await client.post(EDIT, json={"prompt": "x"})
    assert (await no_images.json())["error"]["code"] == "missing_required_parameter"


async def test_variations(make_client: MakeClient) -> None:
    client = await make_client()
    form = aiohttp.FormData()
    form.add_field("image", _png_header(256, 256), filename="in.png", content_type="image/png")
    form.add_field("n", "2")
    form.add_field("response_format", "b64_json")
    form.add_field("size", "512x512")
    payload = await (await client.post(VARIATION, data=form)).json()
    assert [_png_size(item["b64_json"]) for item in payload["data"]] == [(64, 64), (64, 64)]
    assert "usage" not in payload
    refused = aiohttp.FormData()
    refused.add_field("image", b"x", filename="in.png", content_type="image/png")
    refused.add_field("model", "gpt-image-1")
    resp = await client.post(VARIATION, data=refused)
    assert resp.status == 400 and (await resp.json())["error"]["param"] == "model"


# --- streaming --------------------------------------------------------------------------------


async def test_stream_partial_images_then_completed(make_client: MakeClient) -> None:
    client = await make_client()
    body = {"model": "gpt-image-1", "prompt": "abcd", "quality": "low", "partial_images": 2}
    resp = await client.post(GEN, json={**body, "stream": True})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert resp.headers["x-request-id"].startswith("req_")
    raw = await resp.read()
    events = _events(raw)
    assert [name for name, _ in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    assert all(data["type"] == name for name, data in events)
    assert [data["partial_image_index"] for _, data in events[:2]] == [0, 1]
    completed = events[2][1]
    assert set(completed) == {
        "type", "b64_json", "created_at", "size", "quality", "background", "output_format",
        "usage",
    }  # fmt: skip
    assert completed["usage"]["output_tokens"] == 272 + 200
    assert completed["usage"]["input_tokens"] == 1
    assert (completed["size"], completed["quality"]) == ("1024x1024", "low")
    images = [data["b64_json"] for _, data in events]
    assert len(set(images)) == 3 and all(_png_size(b64) == (64, 64) for b64 in images)
    # Compact JSON, one event per blank-line-terminated block.
    assert raw.count(b"\n\n") == 3 and b'", "' not in raw
    # The streamed final image is the same picture the non-streamed request returns.
    plain = await (await client.post(GEN, json=body)).json()
    assert plain["data"][0]["b64_json"] == completed["b64_json"]
    assert plain["usage"]["output_tokens"] == 272  # partial images cost only when streamed


async def test_stream_edit_multipart_with_n2_splits_usage(make_client: MakeClient) -> None:
    client = await make_client(partial_interval_ms=1)
    form = aiohttp.FormData()
    form.add_field("image", _png_header(64, 64), filename="a.png", content_type="image/png")
    form.add_field("prompt", "abcd")
    form.add_field("stream", "true")
    form.add_field("partial_images", "1")
    form.add_field("n", "2")
    form.add_field("quality", "low")
    events = _events(await (await client.post(EDIT, data=form)).read())
    assert [name for name, _ in events] == [
        "image_edit.partial_image",
        "image_edit.completed",
        "image_edit.partial_image",
        "image_edit.completed",
    ]
    share, whole = events[1][1]["usage"], events[3][1]["usage"]
    assert share["output_tokens"] == 372 and share["input_tokens"] == 1 + 194
    assert whole["output_tokens"] == 2 * 372 and whole["input_tokens"] == 1 + 194


# --- faults -----------------------------------------------------------------------------------


async def test_fault_error_500_and_429(make_client: MakeClient) -> None:
    client = await make_client(record=True)
    body = {"model": "gpt-image-1", "prompt": "x"}
    resp = await client.post(GEN, json=body, headers={"x-simulator-fault": "error:500"})
    assert resp.status == 500
    assert (await resp.json())["error"]["type"] == "server_error"
    assert resp.headers["x-request-id"].startswith("req_")
    limited = await client.post(GEN, json=body, headers={"x-simulator-fault": "error:429"})
    assert limited.status == 429
    assert limited.headers["retry-after"] == "1"
    error = (await limited.json())["error"]
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    assert len(_state(client).requests) == 2  # faulted requests are recorded too
    unknown = await client.post(GEN, json=body, headers={"x-simulator-fault": "explode"})
    assert unknown.status == 400
    error = (await unknown.json())["error"]
    assert error["param"] == "x-simulator-fault" and "cut:<k>" in error["message"]


async def test_fault_cut_stream_sends_whole_events_then_a_torn_tail(
    make_client: MakeClient,
) -> None:
    client = await make_client()
    body = {"model": "gpt-image-1", "prompt": "p", "stream": True, "partial_images": 2}
    full = await (await client.post(GEN, json=body)).read()
    first_event = full[: full.index(b"\n\n") + 2]
    resp = await client.post(GEN, json=body, headers={"x-simulator-fault": "cut:1"})
    assert resp.status == 200
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async for chunk in resp.content.iter_any():
            received += chunk
    # The same first event (its `created_at` may have moved to the next second meanwhile).
    unstamped = re.compile(rb'"created_at":\d+')
    assert unstamped.sub(b"", received).startswith(unstamped.sub(b"", first_event))
    tail = received[len(first_event) :]
    assert 0 < len(tail) < len(full) - len(first_event)
    assert full[len(first_event) :].startswith(tail)  # a true prefix of the second event
    assert not tail.endswith(b"\n\n")
    await _wait_idle(client)


async def test_fault_cut_plain_response_is_a_payload_error(make_client: MakeClient) -> None:
    client = await make_client()
    body = {"model": "gpt-image-1", "prompt": "p"}
    full = await (await client.post(GEN, json=body)).read()
    resp = await client.post(GEN, json=body, headers={"x-simulator-fault": "cut:0"})
    assert resp.status == 200
    assert int(resp.headers["Content-Length"]) == len(full)
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()


async def test_fault_disconnect_is_a_connection_error(make_client: MakeClient) -> None:
    client = await make_client(record=True)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.post(GEN, json={"prompt": "x"}, headers={"x-simulator-fault": "disconnect"})
    assert len(_state(client).requests) == 1
    await _wait_idle(client)


async def test_fault_timeout_ends_when_the_client_gives_up(make_client: MakeClient) -> None:
    client = await make_client()
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await client.post(
            GEN,
            json={"prompt": "x"},
            headers={"x-simulator-fault": "timeout"},
            timeout=aiohttp.ClientTimeout(total=0.3),
        )
    assert time.monotonic() - started < 2
    await _wait_idle(client)  # the handler noticed and exited


async def test_fault_hang_stream_sends_one_event_then_nothing(make_client: MakeClient) -> None:
    client = await make_client()
    body = {"model": "gpt-image-1", "prompt": "p", "stream": True, "partial_images": 1}
    resp = await client.post(GEN, json=body, headers={"x-simulator-fault": "hang-stream"})
    first = await resp.content.readuntil(b"\n\n")
    assert first.startswith(b"event: image_generation.partial_image\ndata: {")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(resp.content.read(1), 0.2)
    resp.close()
    await _wait_idle(client)


async def test_fault_slow_and_configured_fault_rate(make_client: MakeClient) -> None:
    client = await make_client()
    started = time.monotonic()
    resp = await client.post(GEN, json={"prompt": "x"}, headers={"x-simulator-fault": "slow:150"})
    assert resp.status == 200 and time.monotonic() - started >= 0.15
    always = await make_client(fault="error:503", fault_rate=1.0)
    assert (await always.post(GEN, json={"prompt": "x"})).status == 503
    never = await make_client(fault="error:503", fault_rate=0.0)
    assert (await never.post(GEN, json={"prompt": "x"})).status == 200
    half = await make_client(fault="error:503", fault_rate=0.5, seed=3)
    statuses = [(await half.post(GEN, json={"prompt": "x"})).status for _ in range(20)]
    assert set(statuses) == {200, 503}
    again = await make_client(fault="error:503", fault_rate=0.5, seed=3)
    assert [(await again.post(GEN, json={"prompt": "x"})).status for _ in range(20)] == statuses


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="accepted"):
        SimulatorConfig(fault="explode")
    with pytest.raises(ValueError):
        SimulatorConfig(fault_rate=1.5)


# --- auth, state, CLI -------------------------------------------------------------------------


async def test_api_key_is_enforced(make_client: MakeClient) -> None:
    client = await make_client(api_key="sk-test-123456789")
    body = {"prompt": "x"}
    missing = await client.post(GEN, json=body)
    assert missing.status == 401
    assert (await missing.json())["error"]["code"] == "invalid_api_key"
    wrong = await client.post(GEN, json=body, headers={"Authorization": "Bearer sk-nope-00000000"})
    assert wrong.status == 401
    error = (await wrong.json())["error"]
    assert error["code"] == "invalid_api_key" and "sk-nope-00000000" not in error["message"]
    right = await client.post(GEN, json=body, headers={"Authorization": "Bearer sk-test-123456789"})
    assert right.status == 200


def test_file_cache_is_bounded() -> None:
    state = SimulatorState(SimulatorConfig())
    ids = [state.store_file(i.to_bytes(4, "big")) for i in range(FILE_CACHE_SIZE + 1)]
    assert len(state.files) == FILE_CACHE_SIZE
    assert ids[0] not in state.files and ids[-1] in state.files


def test_cli_arguments() -> None:
    parser = argparse.ArgumentParser()
    add_simulator_arguments(parser)
    ns = parser.parse_args([])
    assert (ns.host, ns.port) == ("127.0.0.1", 8090)
    assert config_from_args(ns) == SimulatorConfig()
    ns = parser.parse_args(
        ["--fault", "cut:2", "--latency-ms", "5", "--api-key", "k", "--image-px", "16"]
    )
    config = config_from_args(ns)
    assert (config.fault, config.fault_rate, config.latency_ms) == ("cut:2", 1.0, 5.0)
    assert (config.api_key, config.image_px, config.record) == ("k", 16, False)
    assert config_from_args(parser.parse_args(["--fault", "timeout", "--fault-rate", "0.25"])) == (
        SimulatorConfig(fault="timeout", fault_rate=0.25)
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["--fault", "explode"])


async def test_json_body_without_content_type_is_accepted(make_client: MakeClient) -> None:
    client = await make_client(record=True)
    body = json.dumps({"model": "gpt-image-1", "prompt": "abcd"}).encode()
    resp = await client.post(GEN, data=body, headers={"Content-Type": ""})
    assert resp.status == 200, await resp.text()
    assert _state(client).requests[0].json == {"model": "gpt-image-1", "prompt": "abcd"}
    text = await client.post(GEN, data=b"prompt=x", headers={"Content-Type": "text/plain"})
    assert text.status == 400
    assert "Content-Type" in (await text.json())["error"]["message"]
