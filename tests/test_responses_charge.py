"""A response's request read (what is refused, what is bounded), its estimate, its answer read
without decoding images, and its charge: text part plus image part, exact, never $0 by accident."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from gateway.errors import GatewayError
from gateway.pricing import Usage, load_prices, usage_cost_nanos
from gateway.responses.charge import charge_parts, cut_charge
from gateway.responses.estimate import TEXT_MODEL_IMAGE_TOKENS, quote_response
from gateway.responses.reading import count_image_calls, image_usage, text_usage
from gateway.responses.request import FRAMING_TOKENS, read_ask
from gateway.settings import SHIPPED_PRICES

TABLE = load_prices(SHIPPED_PRICES)
TOOL = {
    "type": "image_generation",
    "model": "gpt-image-1-mini",
    "quality": "low",
    "size": "1024x1024",
}


def ask(**body: Any) -> Any:
    return read_ask(
        {"model": "gpt-5", "input": "a cat", "tools": [TOOL], **body}, "gpt-image-2.6-sunburst", 1
    )


def refused(**body: Any) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        ask(**body)
    return caught.value


def test_only_image_work_with_tools_the_gateway_can_price_is_read() -> None:
    assert refused(tools=[{"type": "function", "name": "f"}]).code == "not_an_image_request"
    hosted = refused(tools=[TOOL, {"type": "code_interpreter"}])
    assert (hosted.code, hosted.param) == ("unsupported_tool", "tools[1]")
    assert "'code_interpreter'" in hosted.message
    assert refused(tool_choice={"type": "mcp"}).code == "unsupported_tool"
    assert refused(stream=True, background=True).code == "unsupported_value"
    assert refused(max_output_tokens=0).param == "max_output_tokens"
    assert refused(max_tool_calls=17).param == "max_tool_calls"


def test_what_the_estimate_rests_on_is_read_and_bounded() -> None:
    read = ask(
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "héllo"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                ],
            }
        ],
        max_tool_calls=3,
        previous_response_id="resp_1",
    )
    tools_bytes = len(json.dumps([TOOL]))
    assert (
        read.input_tokens_bound
        == len("héllo".encode())
        + len("user")
        + len("input_text")
        + len("input_image")
        + tools_bytes
        + FRAMING_TOKENS
    )
    assert read.max_images == 3 and len(read.input_images) == 1
    assert not read.self_contained and ask().self_contained
    assert ask(tools=[{"type": "image_generation"}]).image_model == "gpt-image-2.6-sunburst"


def test_the_estimate_is_the_text_part_plus_each_image() -> None:
    quoted = quote_response(TABLE, ask(max_output_tokens=1000, max_tool_calls=2))
    gpt5 = TABLE.lookup("gpt-5")
    assert gpt5 is not None
    read = ask().input_tokens_bound
    assert quoted.text_input_nanos == usage_cost_nanos(gpt5, Usage(read, 0, 0, 0, 0, 0))
    assert quoted.text_nanos == quoted.text_input_nanos + 1000 * 10_000  # $10.00 / 1M
    assert quoted.nanos == quoted.text_nanos + 2 * quoted.image_each_nanos
    unbounded = quote_response(TABLE, ask())
    assert unbounded.text_nanos > quoted.text_nanos  # the model's most: 128,000 tokens
    with_image = quote_response(
        TABLE,
        ask(
            input=[
                {
                    "role": "user",
                    "content": [{"type": "input_image", "image_url": "https://example.com/a.png"}],
                }
            ]
        ),
    )
    assert with_image.text_input_nanos > usage_cost_nanos(
        gpt5, Usage(TEXT_MODEL_IMAGE_TOKENS, 0, 0, 0, 0, 0)
    )
    for body, param in (
        ({"model": "gpt-image-2"}, "model"),
        ({"model": "nope"}, "model"),
        ({"tools": [{**TOOL, "model": "nope"}]}, "tools"),
    ):
        with pytest.raises(GatewayError) as caught:
            quote_response(TABLE, ask(**body))
        assert caught.value.param == param


def test_both_usages_are_read_as_billed() -> None:
    text = text_usage(
        {
            "input_tokens": 100,
            "input_tokens_details": {"cached_tokens": 40},
            "output_tokens": 30,
            "output_tokens_details": {"reasoning_tokens": 20},
        }
    )
    assert text == Usage(60, 40, 0, 0, 0, 30)
    assert text_usage({"input_tokens": -1, "output_tokens": 1}) is None
    image = image_usage(
        {
            "image_gen": {
                "input_tokens": 50,
                "input_tokens_details": {"text_tokens": 30, "image_tokens": 20},
                "output_tokens": 272,
                "output_tokens_details": {"image_tokens": 272, "text_tokens": 0},
                "cached_tokens_details": {"cached_text_tokens": 10, "cached_image_tokens": 5},
            }
        }
    )
    assert image == Usage(20, 10, 15, 5, 272, 0)
    assert image_usage({"web_search": {}}) is None


def test_image_calls_are_counted_without_decoding() -> None:
    body = json.dumps(
        {
            "output": [
                {"type": "image_generation_call", "result": "A" * 1000},
                {"type": "message", "content": "no image here"},
                {"type": "image_generation_call", "result": "B"},
            ]
        }
    )
    assert count_image_calls(body.encode()) == 2


def test_the_charge_is_both_parts_exactly() -> None:
    gpt5, mini = TABLE.lookup("gpt-5"), TABLE.lookup("gpt-image-1-mini")
    assert gpt5 is not None and mini is not None
    text, image = Usage(60, 40, 0, 0, 0, 30), Usage(30, 0, 20, 0, 272, 0)
    parts = charge_parts(gpt5, mini, text, image, 1, text_estimate_nanos=9, image_each_nanos=9)
    expected_text = (Decimal(60) * Decimal("1.25") + 40 * Decimal("0.125") + 30 * 10) * 1000
    expected_image = (30 * 2 + 20 * Decimal("2.50") + 272 * 8) * 1000
    assert (parts.text_nanos, parts.image_nanos) == (int(expected_text), int(expected_image))
    assert not parts.usage_missing
    missing = charge_parts(gpt5, mini, None, None, 2, text_estimate_nanos=7, image_each_nanos=5)
    assert (missing.text_nanos, missing.image_nanos, missing.usage_missing) == (7, 10, True)
    cut = cut_charge(mini, 1, 2, input_nanos=3, image_each_nanos=1000)
    assert (cut.text_nanos, cut.image_nanos) == (3, 1000 + 200 * 8000)
