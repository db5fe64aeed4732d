"""End to end with the official `openai` SDK: only the base URL points at the gateway."""

from __future__ import annotations

import base64
from typing import Any

import openai
import pytest
from openai.types import ImagesResponse

from gateway.edge.imageinfo import image_dimensions
from tests.conftest import UPSTREAM_KEY, FakeUpstream
from tests.images import png


def only_request(upstream: FakeUpstream) -> Any:
    assert len(upstream.requests) == 1, [r.path for r in upstream.requests]
    return upstream.requests[0]


def assert_upstream_auth(recorded: Any, client_key: str) -> None:
    assert recorded.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert all(client_key not in value for value in recorded.headers.values())


async def test_generate_b64(sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream, key: str) -> None:
    result = await sdk.images.generate(
        model="gpt-image-1", prompt="a sea otter", quality="low", size="1024x1536"
    )
    image = base64.b64decode(result.data[0].b64_json)  # type: ignore[index,arg-type]
    assert image.startswith(b"\x89PNG") and image_dimensions(image) is not None
    assert result.usage is not None and result.usage.output_tokens == 408
    recorded = only_request(fake_upstream)
    assert recorded.path == "/v1/images/generations"
    assert recorded.json == {
        "model": "gpt-image-1",
        "prompt": "a sea otter",
        "quality": "low",
        "size": "1024x1536",
    }
    assert_upstream_auth(recorded, key)


async def test_generate_url_for_dall_e(
    sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream
) -> None:
    result = await sdk.images.generate(model="dall-e-2", prompt="a sea otter", n=2)
    assert result.data is not None and len(result.data) == 2
    url = result.data[0].url
    assert url is not None and url.startswith(str(fake_upstream.server.make_url("/")).rstrip("/"))


async def test_upstream_request_id_and_processing_time_reach_the_client(
    sdk: openai.AsyncOpenAI,
) -> None:
    raw = await sdk.images.with_raw_response.generate(model="gpt-image-1", prompt="otter")
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.headers["openai-processing-ms"].isdigit()
    assert raw.headers["x-gateway-request-id"].startswith("req_gw_")
    assert "x-ratelimit-limit-requests" not in raw.headers


async def test_generate_stream_relays_partial_images(
    sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream
) -> None:
    stream = await sdk.images.generate(
        model="gpt-image-1",
        prompt="a river of owl feathers",
        stream=True,
        partial_images=2,
        quality="low",
        size="1024x1024",
    )
    events = [event async for event in stream]
    assert [e.type for e in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    assert [e.partial_image_index for e in events[:2]] == [0, 1]  # type: ignore[union-attr]
    assert events[-1].usage.output_tokens == 272 + 2 * 100  # type: ignore[union-attr]
    assert only_request(fake_upstream).json["stream"] is True


async def test_edit_with_several_images_and_a_mask_sends_the_same_bytes_in_order(
    sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream, key: str
) -> None:
    images = [png(32 + i, 32, seed=i) for i in range(3)]
    mask = png(32, 32, seed=99)
    result = await sdk.images.edit(
        model="gpt-image-1",
        image=[(f"item{i}.png", data, "image/png") for i, data in enumerate(images)],
        mask=("mask.png", mask, "image/png"),
        prompt="a gift basket of these",
    )
    assert result.data and result.data[0].b64_json
    recorded = only_request(fake_upstream)
    assert [(f.field, f.filename, f.data) for f in recorded.files] == [
        ("image[]", "item0.png", images[0]),
        ("image[]", "item1.png", images[1]),
        ("image[]", "item2.png", images[2]),
        ("mask", "mask.png", mask),
    ]
    assert ("prompt", "a gift basket of these") in recorded.fields
    assert_upstream_auth(recorded, key)


async def test_edit_with_a_single_image_is_sent_as_image(
    sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream
) -> None:
    image = png(40, 40)
    await sdk.images.edit(model="gpt-image-1", image=("one.png", image, "image/png"), prompt="p")
    assert [(f.field, f.data) for f in only_request(fake_upstream).files] == [("image", image)]


async def test_edit_stream(sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream) -> None:
    stream = await sdk.images.edit(
        model="gpt-image-1",
        image=("a.png", png(16, 16), "image/png"),
        prompt="p",
        stream=True,
        partial_images=1,
    )
    types = [event.type async for event in stream]
    assert types == ["image_edit.partial_image", "image_edit.completed"]
    assert ("stream", "true") in only_request(fake_upstream).fields


async def test_edit_json_form_with_image_urls(
    sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream
) -> None:
    body = {
        "model": "gpt-image-1",
        "prompt": "combine",
        "images": [{"image_url": "https://example.com/a.png"}, {"file_id": "file-123"}],
    }
    result = await sdk.post("/images/edits", body=body, cast_to=ImagesResponse)
    assert result.data and result.data[0].b64_json
    assert only_request(fake_upstream).json == body


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")
async def test_variation(sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream) -> None:
    image = png(64, 64)
    result = await sdk.images.create_variation(image=("v.png", image, "image/png"), n=1)
    assert result.data and result.data[0].url
    recorded = only_request(fake_upstream)
    assert recorded.path == "/v1/images/variations"
    assert [(f.field, f.data) for f in recorded.files] == [("image", image)]


async def test_fields_the_gateway_never_saw_pass_through_untouched(
    sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream
) -> None:
    extra = {"svg": {"mode": "strict"}, "brand_new_field": [1, {"deep": True}]}
    await sdk.images.generate(
        model="gpt-image-1", prompt="otter", quality="xhigh", complexity="high", extra_body=extra
    )
    sent = only_request(fake_upstream).json
    assert sent == {
        "model": "gpt-image-1",
        "prompt": "otter",
        "quality": "xhigh",
        "complexity": "high",
        **extra,
    }


async def test_unknown_multipart_field_passes_through(
    sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream
) -> None:
    await sdk.images.edit(
        model="gpt-image-1",
        image=("a.png", png(8, 8), "image/png"),
        prompt="p",
        extra_body={"frame_count": 4, "future_flag": "on"},
    )
    fields = only_request(fake_upstream).fields
    assert ("future_flag", "on") in fields and ("frame_count", "4") in fields


# Errors, each as the SDK exception class users catch.


async def test_unknown_key_is_authentication_error(
    sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream
) -> None:
    bad = sdk.with_options(api_key="sk-gw-not-a-key")
    with pytest.raises(openai.AuthenticationError) as caught:
        await bad.images.generate(model="gpt-image-1", prompt="otter")
    assert caught.value.code == "invalid_api_key"
    assert "sk-gw-not-a-key" not in caught.value.message
    assert fake_upstream.requests == []


async def test_missing_prompt_is_bad_request_and_never_reaches_upstream(
    sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.post("/images/generations", body={"model": "gpt-image-1"}, cast_to=ImagesResponse)
    assert caught.value.code == "missing_required_parameter"
    assert caught.value.param == "prompt"
    assert fake_upstream.requests == []


@pytest.mark.parametrize(
    ("fault", "exception", "status"),
    [
        ("error:500", openai.InternalServerError, 500),
        ("error:429", openai.RateLimitError, 429),
        ("error:400", openai.BadRequestError, 400),
    ],
)
async def test_upstream_errors_pass_through_with_status_and_body(
    sdk: openai.AsyncOpenAI, fault: str, exception: type[openai.APIStatusError], status: int
) -> None:
    with pytest.raises(exception) as caught:
        await sdk.images.generate(
            model="gpt-image-1", prompt="otter", extra_headers={"x-simulator-fault": fault}
        )
    assert caught.value.status_code == status
    assert isinstance(caught.value.body, dict) and caught.value.body.get("message")
    assert caught.value.request_id and caught.value.request_id.startswith("req_")


async def test_upstream_disconnect_is_502(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        await sdk.images.generate(
            model="gpt-image-1", prompt="o", extra_headers={"x-simulator-fault": "disconnect"}
        )
    assert caught.value.status_code == 502 and caught.value.code == "upstream_unreachable"


async def test_stream_cut_before_completion_raises_api_error(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.images.generate(
        model="gpt-image-1",
        prompt="o",
        stream=True,
        partial_images=3,
        extra_headers={"x-simulator-fault": "cut:1"},
    )
    received = []
    with pytest.raises(openai.APIError) as caught:
        async for event in stream:
            received.append(event.type)
    assert received == ["image_generation.partial_image"]
    assert "cut" in caught.value.message
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "stream_cut"


async def test_unknown_route_is_not_found(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        await sdk.models.list()


async def test_a_model_without_a_price_is_refused_by_name(
    sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.images.generate(model="gpt-image-9", prompt="otter")
    assert caught.value.code == "model_not_priced" and caught.value.param == "model"
    assert "gpt-image-9" in caught.value.message
    assert fake_upstream.requests == []
