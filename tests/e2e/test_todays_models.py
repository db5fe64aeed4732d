"""Issue 10, part 1: today's models through the official SDK, priced to the nano-dollar.

The simulator answers as the API does, with usage by its own token model; the expected charge is
that usage at the rates written below (the issue's figures), never the gateway's own table."""

from __future__ import annotations

import typing
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import openai
import pytest
from openai.types import ImageModel

from gateway.app import create_app
from gateway.runtime.state import SERVICES
from gateway.settings import Settings
from tests.conftest import FakeUpstream
from tests.images import png

# USD per 1M tokens: text in, image in, image out, text out (issue 10; the 2.5 family "aligned
# with GPT Image 2").
GPT_IMAGE_2 = ("5.00", "8.00", "30.00", "10.00")
RATES = {
    "gpt-image-2": GPT_IMAGE_2,
    "gpt-image-2-2026-04-21": GPT_IMAGE_2,
    "gpt-image-2.5-sunburst": GPT_IMAGE_2,
    "gpt-image-2.5-sunburst-2026-09-08": GPT_IMAGE_2,
    "gpt-image-2.5-flare": GPT_IMAGE_2,
    "gpt-image-2.5-flare-2026-09-08": GPT_IMAGE_2,
    "gpt-image-2.6-sunburst": GPT_IMAGE_2,
    "gpt-image-2.6-flare": GPT_IMAGE_2,
    "gpt-image-1.5": ("5.00", "8.00", "32.00", "10.00"),
    "chatgpt-image-latest": ("5.00", "8.00", "32.00", "10.00"),
    "gpt-image-1-mini": ("2.00", "2.50", "8.00", "8.00"),
    "gpt-image-1": ("5.00", "10.00", "40.00", "40.00"),
}
GPT_5 = ("1.25", "10.00")  # text in, text out: the SVG author
# Every model the SDK lists has a known price today (2.6 since OpenAI published it).
NO_KNOWN_PRICE: set[str] = set()
PER_IMAGE = {"dall-e-2", "dall-e-3"}


def nanos(tokens: int, usd_per_million: str) -> Decimal:
    return tokens * Decimal(usd_per_million) * 1000


def charge(model: str, usage: Any) -> int:
    text_in, image_in, image_out, text_out = RATES[model]
    details = usage.output_tokens_details
    text_output = details.text_tokens if details is not None else 0
    total = (
        nanos(usage.input_tokens_details.text_tokens, text_in)
        + nanos(usage.input_tokens_details.image_tokens, image_in)
        + nanos(usage.output_tokens - text_output, image_out)
        + nanos(text_output, text_out)
    )
    return int(total.quantize(Decimal(1)))


async def last_row(sdk_gateway: Any) -> tuple[Any, ...]:
    rows = await sdk_gateway.app[SERVICES].store._all(
        "SELECT outcome, cost_nanos, estimate_nanos, model FROM ledger ORDER BY id DESC LIMIT 1"
    )
    return tuple(rows[0])


def test_every_model_the_sdk_lists_is_priced_or_refused_by_name() -> None:
    listed = set(typing.get_args(ImageModel))
    assert listed == set(RATES) | NO_KNOWN_PRICE | PER_IMAGE


@pytest.mark.parametrize("model", sorted(RATES))
async def test_each_priced_model_is_charged_its_usage_at_its_rates(
    gateway: Any, sdk: openai.AsyncOpenAI, model: str
) -> None:
    raw = await sdk.images.with_raw_response.generate(model=model, prompt="a lighthouse")
    result = raw.parse()
    assert result.usage is not None
    expected = charge(model, result.usage)
    outcome, cost, estimate, _ = await last_row(gateway)
    assert (outcome, cost) == ("ok", expected)
    assert estimate >= cost
    assert Decimal(raw.headers["x-gateway-cost-usd"]) * 10**9 == expected


@pytest.mark.parametrize(
    "extra",
    [
        {"size": "3840x2160", "quality": "max"},
        {"size": "2560x1440", "quality": "xhigh"},
        {"size": "1536x864", "quality": "high", "n": 3},
        {"output_format": "gif", "frame_count": 16, "quality": "high"},
        {"output_format": "gif", "quality": "medium"},  # 9 frames when not given
        {"complexity": "high", "quality": "high", "n": 2},
        {"quality": "max"},  # complexity left to the model's default
    ],
)
async def test_the_estimate_bounds_what_gpt_image_2_costs(
    gateway: Any, sdk: openai.AsyncOpenAI, extra: dict[str, Any]
) -> None:
    result = await sdk.images.generate(model="gpt-image-2", prompt="a harbour", **extra)
    assert result.usage is not None
    outcome, cost, estimate, _ = await last_row(gateway)
    assert (outcome, cost) == ("ok", charge("gpt-image-2", result.usage))
    assert estimate >= cost


async def test_svg_output_is_charged_at_its_authors_prices_too(
    gateway: Any, sdk: openai.AsyncOpenAI
) -> None:
    result = await sdk.images.generate(
        model="gpt-image-2", prompt="a logo", output_format="svg", svg={"model": "gpt-5"}
    )
    assert result.usage is not None and result.svg_usage is not None
    svg = result.svg_usage
    assert svg.model == "gpt-5"
    author = nanos(svg.input_tokens, GPT_5[0]) + nanos(svg.output_tokens, GPT_5[1])
    outcome, cost, estimate, _ = await last_row(gateway)
    assert outcome == "ok"
    assert cost == charge("gpt-image-2", result.usage) + int(author)
    assert estimate >= cost


async def test_an_svg_author_without_a_price_is_refused_before_upstream(
    gateway: Any, sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.images.generate(
            model="gpt-image-2", prompt="a logo", output_format="svg", svg={"model": "gpt-9"}
        )
    assert caught.value.code == "model_not_priced"
    assert caught.value.param == "svg.model"
    assert fake_upstream.requests == []


# Names the table does not know (a model the API may add tomorrow) are refused by name.
@pytest.mark.parametrize("model", sorted(NO_KNOWN_PRICE | {"gpt-image-2.7-preview"}))
async def test_models_without_a_known_price_are_refused_by_name(
    gateway: Any, sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream, model: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.images.generate(model=model, prompt="a harbour")
    assert caught.value.code == "model_not_priced"
    assert model in str(caught.value)
    assert fake_upstream.requests == []


async def test_a_request_without_a_model_is_refused_as_the_api_does(
    gateway: Any, sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.images.generate(prompt="a harbour")
    assert caught.value.code == "missing_required_parameter"
    assert caught.value.param == "model"
    assert fake_upstream.requests == []


async def test_a_default_model_set_by_the_operator_is_charged_at_its_prices(
    aiohttp_client: Any,
    fake_upstream: FakeUpstream,
    make_settings: Callable[..., Settings],
    make_key: Any,
) -> None:
    settings = make_settings(
        upstream_url=fake_upstream.url, default_model_generations="gpt-image-1.5"
    )
    client = await aiohttp_client(create_app(settings))
    from gateway.admin import accounts

    store = client.app[SERVICES].store
    await accounts.create_team(store, accounts.TeamCreate(name="d"))
    issued = await accounts.create_key(store, accounts.KeyCreate(team="d"))
    sdk = openai.AsyncOpenAI(
        base_url=str(client.make_url("/v1")), api_key=issued.secret, max_retries=0
    )
    async with sdk:
        await sdk.images.generate(prompt="a harbour", quality="low")
    outcome, cost, estimate, model = await last_row(client)
    assert model == "gpt-image-1.5"
    # The simulator plays the older API, which took an omitted model for dall-e-2 and answers
    # without token usage: a 200 the gateway cannot read usage from is charged its estimate.
    assert (outcome, cost) == ("usage_missing", estimate)
    assert cost > 0


async def test_dall_e_3_quality_auto_costs_what_omitting_it_costs(
    gateway: Any, sdk: openai.AsyncOpenAI
) -> None:
    await sdk.images.generate(model="dall-e-3", prompt="a harbour", quality="auto")
    await sdk.images.generate(model="dall-e-3", prompt="a harbour")
    rows = await gateway.app[SERVICES].store._all("SELECT cost_nanos FROM ledger ORDER BY id")
    assert [row[0] for row in rows] == [40_000_000, 40_000_000]  # $0.040: standard 1024x1024


@pytest.mark.parametrize("model", ["gpt-image-2", "gpt-image-2.6-flare"])
async def test_a_gpt_image_2_edit_reads_its_input_at_high_fidelity_within_its_estimate(
    gateway: Any, sdk: openai.AsyncOpenAI, model: str
) -> None:
    """GPT Image 2 reads input images at high fidelity unasked (the API: omit input_fidelity);
    the simulator bills it so, and the estimate holds it."""
    result = await sdk.images.edit(
        model=model, image=("in.png", png(1024, 1024), "image/png"), prompt="warmer"
    )
    assert result.usage is not None and result.usage.input_tokens_details.image_tokens > 4160
    outcome, cost, estimate, _ = await last_row(gateway)
    assert outcome == "ok" and 0 < cost <= estimate


async def test_an_svg_author_without_a_price_is_refused_in_a_form_too(
    gateway: Any, sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.images.edit(
            model="gpt-image-2.5-flare",
            image=("in.png", png(64, 64), "image/png"),
            prompt="a logo",
            output_format="svg",
            svg={"model": "gpt-9-unpriced"},
        )
    assert (caught.value.code, caught.value.param) == ("model_not_priced", "svg.model")
    assert fake_upstream.requests == []
