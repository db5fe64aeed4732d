"""The simulator's Files and Batches APIs, driven with the official SDK as the gateway's tests
will drive them: upload, create, retrieve until it ends, read the output; each line answered as
the online endpoint answers it; failures, expiry and cancel by their markers."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import openai
import pytest

from simulator import SimulatorConfig, create_simulator_app

GEN: Final = "/v1/images/generations"


def line(custom_id: str, prompt: str, **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": GEN,
        "body": {"model": "gpt-image-1", "prompt": prompt, "quality": "low", **body},
    }


def jsonl(*lines: dict[str, Any]) -> io.BytesIO:
    return io.BytesIO(b"".join(json.dumps(item).encode() + b"\n" for item in lines))


def four_lines() -> list[dict[str, Any]]:
    return [line(str(i), f"a kite {i}") for i in range(4)]


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


async def ended(sdk: openai.AsyncOpenAI, batch_id: str) -> Any:
    for _ in range(200):
        batch = await sdk.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            return batch
        await asyncio.sleep(0.02)
    raise AssertionError(f"batch {batch_id} never ended")


async def output_of(sdk: openai.AsyncOpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    content = await sdk.files.content(file_id)
    return [json.loads(raw) for raw in content.content.splitlines()]


async def test_a_batch_answers_each_line_as_the_online_endpoint_would(make_sdk: MakeSdk) -> None:
    sdk = await make_sdk(batch_ms=100)
    upload = await sdk.files.create(
        file=("lines.jsonl", jsonl(line("a", "a kite"), line("b", "a boat", n=2))),
        purpose="batch",
    )
    assert upload.purpose == "batch" and upload.bytes > 0
    batch = await sdk.batches.create(input_file_id=upload.id, endpoint=GEN, completion_window="24h")
    assert batch.request_counts is not None
    assert batch.status == "in_progress" and batch.request_counts.total == 2
    done = await ended(sdk, batch.id)
    assert done.status == "completed" and done.request_counts.completed == 2
    lines = await output_of(sdk, done.output_file_id)
    assert [item["custom_id"] for item in lines] == ["a", "b"]
    online = await sdk.images.generate(model="gpt-image-1", prompt="a boat", quality="low", n=2)
    body = lines[1]["response"]["body"]
    assert lines[1]["response"]["status_code"] == 200 and len(body["data"]) == 2
    assert online.usage is not None and body["usage"] == online.usage.model_dump()
    assert online.data is not None
    assert body["data"][0]["b64_json"] == online.data[0].b64_json  # the same image
    assert done.error_file_id is None
    listed = await sdk.batches.list()
    assert [b.id for b in listed.data] == [batch.id]


async def test_a_failing_line_goes_to_the_error_file_and_the_rest_complete(
    make_sdk: MakeSdk,
) -> None:
    sdk = await make_sdk()
    upload = await sdk.files.create(
        file=("x.jsonl", jsonl(line("ok", "a kite"), line("bad", "a kite [batch-fail]"))),
        purpose="batch",
    )
    done = await ended(sdk, (await sdk.batches.create(
        input_file_id=upload.id, endpoint=GEN, completion_window="24h")).id)  # fmt: skip
    assert (done.request_counts.completed, done.request_counts.failed) == (1, 1)
    (failed,) = await output_of(sdk, done.error_file_id)
    assert failed["custom_id"] == "bad" and failed["response"]["status_code"] == 400
    assert "usage" not in failed["response"]["body"]


async def test_expiry_and_cancel_keep_only_the_lines_done_by_then(make_sdk: MakeSdk) -> None:
    sdk = await make_sdk(batch_ms=300)
    upload = await sdk.files.create(file=("x.jsonl", jsonl(*four_lines())), purpose="batch")
    expiring = await sdk.batches.create(
        input_file_id=upload.id, endpoint=GEN, completion_window="24h",
        metadata={"simulate": "expire"},
    )  # fmt: skip
    expired = await ended(sdk, expiring.id)
    assert expired.status == "expired" and expired.request_counts.completed == 2
    errors = await output_of(sdk, expired.error_file_id)
    assert [e["error"]["code"] for e in errors] == ["batch_expired", "batch_expired"]

    slow = await make_sdk(batch_ms=3000)  # long enough that a busy machine cancels it midway
    upload = await slow.files.create(file=("x.jsonl", jsonl(*four_lines())), purpose="batch")
    cancelling = await slow.batches.create(
        input_file_id=upload.id, endpoint=GEN, completion_window="24h"
    )
    await asyncio.sleep(1.0)  # a third of its time: about one line of four done
    assert (await slow.batches.cancel(cancelling.id)).status == "cancelling"
    cancelled = await ended(slow, cancelling.id)
    assert cancelled.status == "cancelled"
    assert 1 <= cancelled.request_counts.completed <= 3
    assert (
        len(await output_of(slow, cancelled.output_file_id)) == cancelled.request_counts.completed
    )


async def test_what_the_api_refuses_is_refused_alike(make_sdk: MakeSdk) -> None:
    sdk = await make_sdk()
    with pytest.raises(openai.NotFoundError):
        await sdk.batches.create(input_file_id="file-nope", endpoint=GEN, completion_window="24h")
    upload = await sdk.files.create(file=("x.jsonl", jsonl(line("a", "p"))), purpose="batch")
    with pytest.raises(openai.BadRequestError):
        await sdk.batches.create(
            input_file_id=upload.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )
    broken = await sdk.files.create(file=("x.jsonl", io.BytesIO(b"not json\n")), purpose="batch")
    failed = await sdk.batches.create(
        input_file_id=broken.id, endpoint=GEN, completion_window="24h"
    )
    assert failed.status == "failed" and failed.errors is not None
    assert failed.errors.data is not None and failed.errors.data[0].line == 1
    assert (await sdk.files.delete(upload.id)).deleted
    with pytest.raises(openai.NotFoundError):
        await sdk.files.retrieve(upload.id)
