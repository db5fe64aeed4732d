"""The Responses API's image tool through the gateway, driven with the official SDK: each
response charged its text model's usage at the text model's prices plus `tool_usage.image_gen`
at the image model's (recomputed here from the published prices), streams relayed live and
charged the same, cut streams never $0, other teams kept out, refusals before upstream, the
cache answering repeated self-contained requests, background responses charged when they end."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final

import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.accounting.periods import Periods
from gateway.app import create_app
from gateway.runtime.state import SERVICES
from gateway.settings import Settings
from tests.conftest import FakeUpstream, MakeSdk

Gateway = TestClient[web.Request, web.Application]
TEXT_MODEL: Final = "gpt-5"
IMAGE_MODEL: Final = "gpt-image-1-mini"
TOOL: Final[Any] = {
    "type": "image_generation",
    "model": IMAGE_MODEL,
    "quality": "low",
    "size": "1024x1024",
}
PARTIAL_TOOL: Final[Any] = {**TOOL, "partial_images": 2}
# Published prices, USD per 1M tokens (the test's own copy: the oracle).
TEXT_RATES: Final = {
    "input": Decimal("1.25"),
    "cached": Decimal("0.125"),
    "output": Decimal("10.00"),
}
IMAGE_RATES: Final = {"text": Decimal("2.00"), "image": Decimal("2.50"), "output": Decimal("8.00")}


def nanos(usd: Decimal) -> int:
    return int((usd * 10**9).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def expected_parts(response: Any) -> tuple[int, int]:
    """(text, image) nano-dollars from the response's own usages at the published prices."""
    usage, image = response["usage"], response["tool_usage"]["image_gen"]
    cached = usage["input_tokens_details"]["cached_tokens"]
    text = (
        (usage["input_tokens"] - cached) * TEXT_RATES["input"]
        + cached * TEXT_RATES["cached"]
        + usage["output_tokens"] * TEXT_RATES["output"]
    ) / 1_000_000
    details = image["input_tokens_details"]
    picture = (
        details["text_tokens"] * IMAGE_RATES["text"]
        + details["image_tokens"] * IMAGE_RATES["image"]
        + image["output_tokens"] * IMAGE_RATES["output"]
    ) / 1_000_000
    return nanos(text), nanos(picture)


@pytest.fixture
def gateway_overrides() -> dict[str, Any]:
    return {"cache_enabled": True}


async def rows(gateway: Gateway, where: str = "endpoint = 'responses'") -> list[dict[str, Any]]:
    store: Any = gateway.app[SERVICES].store
    found = await store._all(
        "SELECT response_id, cost_nanos, text_cost_nanos, image_cost_nanos, outcome,"
        f" cache_status, model, text_model, images FROM ledger WHERE {where} ORDER BY created_at",
        {},
    )
    keys = (
        "response_id",
        "cost",
        "text",
        "image",
        "outcome",
        "cache",
        "model",
        "text_model",
        "images",
    )
    return [dict(zip(keys, row, strict=True)) for row in found]


async def held(gateway: Gateway, team: str = "team-a") -> int:
    store = gateway.app[SERVICES].store
    found = await store.get_team(team)
    assert found is not None
    now = dt.datetime.now(dt.UTC)
    return (
        await store.spend("team", str(found.id), Periods.at(now), now.timestamp())
    ).reserved_nanos


def posts(upstream: FakeUpstream) -> int:
    return sum(1 for r in upstream.requests if r.method == "POST" and r.path == "/v1/responses")


async def test_a_response_is_charged_its_text_usage_plus_its_image_usage(
    gateway: Gateway, team_sdk: MakeSdk
) -> None:
    sdk = await team_sdk()
    raw = await sdk.responses.with_raw_response.create(
        model=TEXT_MODEL, input="draw a lighthouse at dawn", tools=[TOOL]
    )
    response = raw.parse()
    text, image = expected_parts(response.model_dump())
    assert image > 0 and text > 0
    (row,) = await rows(gateway)
    assert (row["text"], row["image"], row["cost"]) == (text, image, text + image)
    assert row["response_id"] == response.id and row["images"] == 1
    assert (row["model"], row["text_model"], row["outcome"]) == (IMAGE_MODEL, TEXT_MODEL, "ok")
    assert Decimal(raw.headers["x-gateway-cost-usd"]) == Decimal(text + image) / 10**9
    assert await held(gateway) == 0


async def test_a_stream_is_relayed_live_and_charged_the_same(
    gateway: Gateway, team_sdk: MakeSdk
) -> None:
    sdk = await team_sdk()
    stream: Any = await sdk.responses.create(
        model=TEXT_MODEL, input="a lighthouse", stream=True, tools=[PARTIAL_TOOL]
    )
    kinds, completed = [], None
    async for event in stream:
        kinds.append(event.type)
        if event.type == "response.completed":
            completed = event.response.model_dump()
    assert kinds.count("response.image_generation_call.partial_image") == 2
    assert completed is not None
    text, image = expected_parts(completed)
    (row,) = await rows(gateway)
    assert (row["text"], row["image"]) == (text, image)
    assert row["response_id"] == completed["id"]


async def test_a_cut_stream_is_charged_what_it_delivered_never_zero(
    gateway: Gateway, team_sdk: MakeSdk
) -> None:
    sdk = await team_sdk()
    stream: Any = await sdk.responses.create(
        model=TEXT_MODEL,
        input="a lighthouse",
        stream=True,
        tools=[PARTIAL_TOOL],
        extra_headers={"x-simulator-fault": "cut:7"},
    )
    kinds = []
    with pytest.raises(openai.APIError):
        async for event in stream:
            kinds.append(event.type)
    assert kinds.count("response.image_generation_call.partial_image") == 2
    (row,) = await rows(gateway)
    assert row["outcome"] == "stream_cut"
    assert row["text"] > 0 and row["image"] > 0  # its input, and the two partial images
    assert await held(gateway) == 0


async def test_another_teams_response_is_404_everywhere_and_nothing_goes_upstream(
    gateway: Gateway, team_sdk: MakeSdk, fake_upstream: FakeUpstream
) -> None:
    owner, stranger = await team_sdk("team-a"), await team_sdk("team-b")
    made = await owner.responses.create(model=TEXT_MODEL, input="a fox", tools=[TOOL])
    before = len(fake_upstream.requests)
    for call in (
        lambda: stranger.responses.retrieve(made.id),
        lambda: stranger.responses.delete(made.id),
        lambda: stranger.responses.cancel(made.id),
        lambda: stranger.responses.input_items.list(made.id),
        lambda: stranger.responses.create(
            model=TEXT_MODEL, input="again", tools=[TOOL], previous_response_id=made.id
        ),
        lambda: stranger.responses.create(
            model=TEXT_MODEL, input="again", tools=[TOOL], conversation="conv_123"
        ),
    ):
        with pytest.raises(openai.NotFoundError) as refused:
            await call()
        assert refused.value.code == "not_found"
    assert len(fake_upstream.requests) == before
    # The owner reads it, continues it, and lists its input.
    assert (await owner.responses.retrieve(made.id)).id == made.id
    items = await owner.responses.input_items.list(made.id)
    assert [item.type for item in items.data] == ["message"]
    follow = await owner.responses.create(
        model=TEXT_MODEL, input="warmer", tools=[TOOL], previous_response_id=made.id
    )
    assert follow.previous_response_id == made.id


async def test_what_cannot_be_priced_is_refused_before_upstream(
    team_sdk: MakeSdk, fake_upstream: FakeUpstream
) -> None:
    sdk = await team_sdk()
    cases: list[tuple[dict[str, Any], str, str]] = [
        (
            {"tools": [{"type": "function", "name": "f", "parameters": {}}]},
            "not_an_image_request",
            "tools",
        ),
        ({"tools": [TOOL, {"type": "web_search"}]}, "unsupported_tool", "tools[1]"),
        (
            {"tools": [TOOL], "tool_choice": {"type": "file_search"}},
            "unsupported_tool",
            "tool_choice",
        ),
        ({"tools": [TOOL], "model": "gpt-9-unknown"}, "model_not_priced", "model"),
        ({"tools": [{**TOOL, "model": "imagine-9"}]}, "model_not_priced", "tools"),
    ]
    for fields, code, param in cases:
        with pytest.raises(openai.BadRequestError) as refused:
            await sdk.responses.create(**{"model": TEXT_MODEL, "input": "a cat", **fields})
        assert (refused.value.code, refused.value.param) == (code, param)
    assert posts(fake_upstream) == 0


async def test_a_budget_too_small_refuses_before_upstream(
    team_sdk: MakeSdk, fake_upstream: FakeUpstream
) -> None:
    sdk = await team_sdk("small", budget_usd="0.02")
    with pytest.raises(openai.RateLimitError) as refused:
        await sdk.responses.create(model=TEXT_MODEL, input="a cat", tools=[TOOL])
    assert refused.value.code == "insufficient_quota"
    assert "`max_output_tokens` (unset: the model's most)" in refused.value.message
    assert posts(fake_upstream) == 0
    # With max_output_tokens it fits: the estimate is bounded by it.
    await sdk.responses.create(model=TEXT_MODEL, input="a cat", tools=[TOOL], max_output_tokens=200)
    assert posts(fake_upstream) == 1


async def test_a_repeated_self_contained_request_is_a_zero_dollar_hit(
    gateway: Gateway, team_sdk: MakeSdk, fake_upstream: FakeUpstream
) -> None:
    sdk = await team_sdk()
    first = await sdk.responses.create(model=TEXT_MODEL, input="a kite", tools=[TOOL])
    await gateway.app[SERVICES].cache.drain()
    again = await sdk.responses.with_raw_response.create(
        model=TEXT_MODEL, input="a kite", tools=[TOOL]
    )
    assert again.headers["x-gateway-cache"] == "hit"
    assert again.headers["x-gateway-cost-usd"] == "0.00"
    assert again.parse().id == first.id and posts(fake_upstream) == 1
    # One that continues a stored response depends on upstream: it goes there every time.
    for _ in range(2):
        raw = await sdk.responses.with_raw_response.create(
            model=TEXT_MODEL, input="warmer", tools=[TOOL], previous_response_id=first.id
        )
        assert raw.headers["x-gateway-cache"] == "bypass"
    assert posts(fake_upstream) == 3


async def test_a_background_response_is_charged_when_it_ends_after_a_restart_too(
    aiohttp_client: Any,
    simulator: Callable[..., Awaitable[FakeUpstream]],
    make_settings: Callable[..., Settings],
) -> None:
    upstream = await simulator(background_ms=300)
    settings = make_settings(upstream_url=upstream.url)
    first = await aiohttp_client(create_app(settings))
    store = first.app[SERVICES].store
    team = await store.create_team("bg")
    from gateway.edge.auth import issue_key

    key = (await issue_key(store, team)).secret
    sdk = openai.AsyncOpenAI(base_url=str(first.make_url("/v1")), api_key=key, max_retries=0)
    queued = await sdk.responses.create(
        model=TEXT_MODEL, input="a moon", tools=[TOOL], background=True
    )
    assert queued.status == "queued"
    assert await rows(first) == [] and await held(first, "bg") > 0
    await sdk.close()
    await first.close()  # the gateway stops with the response still running

    second = await aiohttp_client(create_app(settings))  # a restart, on the same store
    sdk = openai.AsyncOpenAI(base_url=str(second.make_url("/v1")), api_key=key, max_retries=0)
    import asyncio

    await asyncio.sleep(0.35)
    done = await sdk.responses.retrieve(queued.id)
    await sdk.close()
    assert done.status == "completed"
    (row,) = await rows(second)
    text, image = expected_parts(done.model_dump())
    assert (row["text"], row["image"], row["response_id"]) == (text, image, queued.id)
    assert await held(second, "bg") == 0
