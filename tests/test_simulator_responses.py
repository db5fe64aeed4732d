"""The simulator's Responses API with the image tool, through the official SDK: the image in an
`image_generation_call` item with its usage in `tool_usage.image_gen` (the same as
/v1/images/generations reports for the tool's settings), the text model's own `usage`, streams
with partial images, background responses, cancel, input items, delete."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import openai
import pytest

from simulator import SimulatorConfig, create_simulator_app

TOOL: Any = {
    "type": "image_generation",
    "model": "gpt-image-1-mini",
    "quality": "low",
    "size": "1024x1024",
}
PARTIAL_TOOL: Final[Any] = {**TOOL, "partial_images": 2}
MakeSdk = Callable[..., Awaitable[openai.AsyncOpenAI]]


@pytest.fixture
async def make_sdk(aiohttp_server: Any) -> AsyncIterator[MakeSdk]:
    made: list[openai.AsyncOpenAI] = []

    async def make(**config: Any) -> openai.AsyncOpenAI:
        server = await aiohttp_server(create_simulator_app(SimulatorConfig(**config)))
        client = openai.AsyncOpenAI(
            base_url=str(server.make_url("/v1")), api_key="sk-any", max_retries=0
        )
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


async def test_a_response_makes_one_image_and_reports_both_usages(make_sdk: MakeSdk) -> None:
    sdk = await make_sdk()
    response = await sdk.responses.create(model="gpt-5", input="a red kite", tools=[TOOL])
    calls = [item for item in response.output if item.type == "image_generation_call"]
    assert len(calls) == 1 and calls[0].result
    assert (
        response.usage is not None and response.usage.output_tokens_details.reasoning_tokens == 128
    )
    assert response.tool_usage is not None
    image = await sdk.images.generate(
        model="gpt-image-1-mini", prompt="a red kite", quality="low", size="1024x1024"
    )
    assert image.usage is not None
    assert response.tool_usage.image_gen.output_tokens == image.usage.output_tokens
    assert response.tool_usage.image_gen.input_tokens == image.usage.input_tokens
    none = await sdk.responses.create(model="gpt-4.1", input="no picture [no-image]", tools=[TOOL])
    assert [item.type for item in none.output] == ["message"]
    assert none.tool_usage is not None and none.tool_usage.image_gen.output_tokens == 0


async def test_a_stream_carries_partial_images_and_ends_completed(make_sdk: MakeSdk) -> None:
    sdk = await make_sdk()
    stream: Any = await sdk.responses.create(
        model="gpt-5", input="a kite", tools=[PARTIAL_TOOL], stream=True
    )
    kinds = [event.type async for event in stream]
    assert kinds.count("response.image_generation_call.partial_image") == 2
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"


async def test_background_responses_complete_later_or_are_cancelled(make_sdk: MakeSdk) -> None:
    sdk = await make_sdk(background_ms=60_000)
    queued = await sdk.responses.create(
        model="gpt-5", input="a kite", tools=[TOOL], background=True
    )
    assert queued.status == "queued" and queued.usage is None
    cancelled = await sdk.responses.cancel(queued.id)
    assert cancelled.status == "cancelled" and cancelled.usage is not None
    assert cancelled.usage.output_tokens == 0

    quick = await make_sdk()
    queued = await quick.responses.create(
        model="gpt-5", input="a kite", tools=[TOOL], background=True
    )
    done = await quick.responses.retrieve(queued.id)
    assert done.status == "completed" and done.tool_usage is not None
    items = await quick.responses.input_items.list(queued.id)
    assert [item.type for item in items.data] == ["message"]
    await quick.responses.delete(queued.id)
    with pytest.raises(openai.NotFoundError):
        await quick.responses.retrieve(queued.id)
