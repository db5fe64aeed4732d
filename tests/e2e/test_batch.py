"""The Batch API through the gateway, driven with the official SDK as users drive it: upload,
create, retrieve until it ends, read the output; each line charged from its own usage at batch
prices (recomputed here from the published prices), the hold released, other teams kept out,
budgets enforced before upstream, the cache answering lines it holds."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import io
import json
from collections.abc import Awaitable, Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final

import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.accounting.periods import Periods
from gateway.batch.settle import settle_batch
from gateway.runtime.state import SERVICES
from tests.conftest import FakeUpstream, MakeSdk
from tests.images import png

GEN: Final = "/v1/images/generations"
MODEL: Final = "gpt-image-1-mini"
# gpt-image-1-mini's published prices, USD per 1M tokens, and the Batch API's 50% (the test's
# own copy: the oracle the gateway's books are checked against).
RATES: Final = {
    "text_input": Decimal("2.00"),
    "cached_text_input": Decimal("0.20"),
    "image_input": Decimal("2.50"),
    "cached_image_input": Decimal("0.25"),
    "image_output": Decimal("8.00"),
}
BATCH_SHARE: Final = Decimal("0.5")

Gateway = TestClient[web.Request, web.Application]


def line(custom_id: str, prompt: str, **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": GEN,
        "body": {"model": MODEL, "prompt": prompt, "quality": "low", "size": "1024x1024", **body},
    }


def jsonl(*lines: dict[str, Any]) -> io.BytesIO:
    return io.BytesIO(b"".join(json.dumps(item).encode() + b"\n" for item in lines))


def expected_nanos(usage: dict[str, Any]) -> int:
    """A line's cost from its usage, at the published rates and the batch share."""
    details = usage.get("input_tokens_details") or {}
    text, image = details.get("text_tokens", 0), details.get("image_tokens", 0)
    cached = usage.get("input_tokens_details", {}).get("cached_tokens", 0)
    assert cached == 0  # the simulator caches nothing upstream
    usd = (
        text * RATES["text_input"]
        + image * RATES["image_input"]
        + usage["output_tokens"] * RATES["image_output"]
    ) / 1_000_000
    return int((usd * BATCH_SHARE * 10**9).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@pytest.fixture
async def fake_upstream(simulator: Callable[..., Awaitable[FakeUpstream]]) -> FakeUpstream:
    return await simulator(batch_ms=300)


@pytest.fixture
def gateway_overrides() -> dict[str, Any]:
    return {"cache_enabled": True}


async def run_batch(sdk: openai.AsyncOpenAI, *lines: dict[str, Any], **create: Any) -> Any:
    uploaded = await sdk.files.create(file=("in.jsonl", jsonl(*lines)), purpose="batch")
    batch = await sdk.batches.create(
        input_file_id=uploaded.id, endpoint=GEN, completion_window="24h", **create
    )
    return await ended(sdk, batch.id)


async def ended(sdk: openai.AsyncOpenAI, batch_id: str) -> Any:
    for _ in range(300):
        batch = await sdk.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            return batch
        await asyncio.sleep(0.05)
    raise AssertionError(f"batch {batch_id} did not end: {batch.status}")


async def output_lines(sdk: openai.AsyncOpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    content = await sdk.files.content(file_id)
    return [json.loads(raw) for raw in content.content.splitlines() if raw.strip()]


async def ledger_rows(gateway: Gateway, batch_id: str) -> list[dict[str, Any]]:
    store: Any = gateway.app[SERVICES].store
    rows = await store._all(
        "SELECT custom_id, cost_nanos, saved_nanos, outcome, cache_status, reservation_id"
        " FROM ledger WHERE batch_id = :id ORDER BY custom_id",
        {"id": batch_id},
    )
    keys = ("custom_id", "cost", "saved", "outcome", "cache", "reservation")
    return [dict(zip(keys, row, strict=True)) for row in rows]


async def held(gateway: Gateway, team: str) -> int:
    store = gateway.app[SERVICES].store
    found = await store.get_team(team)
    assert found is not None
    now = dt.datetime.now(dt.UTC)
    spend = await store.spend("team", str(found.id), Periods.at(now), now.timestamp())
    return spend.reserved_nanos


def upstream_paths(upstream: FakeUpstream, method: str = "POST") -> list[str]:
    return [r.path for r in upstream.requests if r.method == method]


async def test_three_lines_are_charged_their_own_usage_at_batch_prices(
    gateway: Gateway, team_sdk: MakeSdk
) -> None:
    sdk = await team_sdk()
    lines = [line(f"l{i}", f"a lighthouse, variant {i}") for i in range(3)]
    lines[2]["body"]["quality"] = "medium"  # lines cost differently
    batch = await run_batch(sdk, *lines)

    assert batch.status == "completed"
    assert batch.request_counts.total == 3 and batch.request_counts.completed == 3
    output = await output_lines(sdk, batch.output_file_id)
    expected = {
        item["custom_id"]: expected_nanos(item["response"]["body"]["usage"]) for item in output
    }
    rows = await ledger_rows(gateway, batch.id)
    assert {row["custom_id"]: row["cost"] for row in rows} == expected
    assert all(row["outcome"] == "ok" and row["reservation"] is None for row in rows)
    assert await held(gateway, "team-a") == 0  # the hold is gone, the lines charged
    usage = await gateway.get(
        "/admin/usage",
        params={"group_by": "batch"},
        headers={"Authorization": "Bearer admin-test-token"},
    )
    by_batch = {row["batch"]: row for row in (await usage.json())["data"]}
    assert by_batch[batch.id]["requests"] == 3
    assert by_batch[batch.id]["cost_usd"] == str(Decimal(sum(expected.values())) / 10**9)
    metrics = await (await gateway.get("/metrics")).text()
    assert 'gateway_batches_total{status="completed"} 1.0' in metrics
    assert 'gateway_batch_lines_total{cache_status="miss",outcome="ok"} 3.0' in metrics
    # Retrieving a settled batch again charges nothing more.
    await sdk.batches.retrieve(batch.id)
    assert len(await ledger_rows(gateway, batch.id)) == 3


async def test_a_failed_line_costs_nothing(gateway: Gateway, team_sdk: MakeSdk) -> None:
    sdk = await team_sdk()
    batch = await run_batch(sdk, line("good", "a barn"), line("bad", "a barn [batch-fail]"))

    assert batch.request_counts.completed == 1 and batch.request_counts.failed == 1
    errors = await output_lines(sdk, batch.error_file_id)
    assert [item["custom_id"] for item in errors] == ["bad"]
    rows = {row["custom_id"]: row for row in await ledger_rows(gateway, batch.id)}
    assert rows["bad"]["cost"] == 0 and rows["bad"]["outcome"] == "upstream_error"
    assert rows["good"]["cost"] > 0
    assert await held(gateway, "team-a") == 0


async def test_another_team_gets_404_on_every_id(
    gateway: Gateway, team_sdk: MakeSdk, fake_upstream: FakeUpstream
) -> None:
    owner, stranger = await team_sdk("team-a"), await team_sdk("team-b")
    uploaded = await owner.files.create(
        file=("in.jsonl", jsonl(line("x", "a fox"))), purpose="batch"
    )
    batch = await owner.batches.create(
        input_file_id=uploaded.id, endpoint=GEN, completion_window="24h"
    )
    done = await ended(owner, batch.id)
    assert done.output_file_id is not None

    for call in (
        lambda: stranger.files.retrieve(uploaded.id),
        lambda: stranger.files.content(uploaded.id),
        lambda: stranger.files.content(done.output_file_id),
        lambda: stranger.files.delete(uploaded.id),
        lambda: stranger.batches.retrieve(batch.id),
        lambda: stranger.batches.cancel(batch.id),
        lambda: stranger.batches.create(
            input_file_id=uploaded.id, endpoint=GEN, completion_window="24h"
        ),
        lambda: stranger.batches.retrieve("batch_gw_doesnotexist"),
    ):
        with pytest.raises(openai.NotFoundError) as refused:
            await call()
        assert refused.value.code == "not_found"
    assert [f.id async for f in stranger.files.list()] == []
    assert [b.id async for b in stranger.batches.list()] == []
    assert uploaded.id in [f.id async for f in owner.files.list()]
    assert [b.id async for b in owner.batches.list()] == [batch.id]


async def test_a_budget_that_cannot_hold_the_batch_refuses_it_before_upstream(
    gateway: Gateway, team_sdk: MakeSdk, fake_upstream: FakeUpstream
) -> None:
    sdk = await team_sdk("small", budget_usd="0.01")
    uploaded = await sdk.files.create(
        file=("in.jsonl", jsonl(*[line(f"l{i}", f"a tree {i}", quality="high") for i in range(4)])),
        purpose="batch",
    )
    with pytest.raises(openai.RateLimitError) as refused:
        await sdk.batches.create(input_file_id=uploaded.id, endpoint=GEN, completion_window="24h")
    assert refused.value.code == "insufficient_quota"
    assert "4 lines are estimated at $" in refused.value.message
    assert "/v1/batches" not in upstream_paths(fake_upstream)
    assert await held(gateway, "small") == 0


async def test_non_image_batches_are_refused(
    gateway: Gateway, team_sdk: MakeSdk, fake_upstream: FakeUpstream
) -> None:
    sdk = await team_sdk()
    chat = {"custom_id": "c", "method": "POST", "url": "/v1/chat/completions", "body": {}}
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk.files.create(file=("in.jsonl", jsonl(line("a", "a cat"), chat)), purpose="batch")
    assert refused.value.code == "unsupported_batch_endpoint"
    assert refused.value.param == "line 2"
    uploaded = await sdk.files.create(file=("in.jsonl", jsonl(line("a", "a cat"))), purpose="batch")
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert refused.value.code == "unsupported_batch_endpoint"
    assert "/v1/batches" not in upstream_paths(fake_upstream)


async def test_a_bad_line_is_refused_by_number_and_nothing_is_forwarded(
    team_sdk: MakeSdk, fake_upstream: FakeUpstream
) -> None:
    sdk = await team_sdk()
    bad = line("b", "a dog", model="no-such-model")
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk.files.create(file=("in.jsonl", jsonl(line("a", "a cat"), bad)), purpose="batch")
    assert refused.value.code == "model_not_priced" and refused.value.param == "line 2"
    assert "/v1/files" not in upstream_paths(fake_upstream)


async def test_cancel_charges_only_the_completed_lines(
    gateway: Gateway, team_sdk: MakeSdk, fake_upstream: FakeUpstream
) -> None:
    sdk = await team_sdk()
    lines = [line(f"l{i}", f"a river {i}") for i in range(6)]
    uploaded = await sdk.files.create(file=("in.jsonl", jsonl(*lines)), purpose="batch")
    fake_upstream.state.config.batch_ms = 3000  # a line every half second: cancelled midway
    batch = await sdk.batches.create(
        input_file_id=uploaded.id, endpoint=GEN, completion_window="24h"
    )
    await asyncio.sleep(1.3)  # two or so lines done
    cancelled = await sdk.batches.cancel(batch.id)
    assert cancelled.status in ("cancelling", "cancelled", "finalizing")
    done = await ended(sdk, batch.id)
    assert done.status == "cancelled"
    output = await output_lines(sdk, done.output_file_id)
    rows = {row["custom_id"]: row for row in await ledger_rows(gateway, batch.id)}
    assert len(rows) == 6
    charged = {cid for cid, row in rows.items() if row["cost"] > 0}
    assert charged == {item["custom_id"] for item in output}
    assert 0 < len(charged) < 6
    assert await held(gateway, "team-a") == 0


async def test_the_cache_answers_lines_it_holds_and_only_the_rest_go_upstream(
    gateway: Gateway, team_sdk: MakeSdk, fake_upstream: FakeUpstream
) -> None:
    sdk = await team_sdk()
    online = await sdk.images.generate(
        model=MODEL, prompt="a kite 1", quality="low", size="1024x1024"
    )
    await gateway.app[SERVICES].cache.drain()
    lines = [line(f"l{i}", f"a kite {i}") for i in range(3)]
    batch = await run_batch(sdk, *lines)

    created = [r for r in fake_upstream.requests if r.path == "/v1/batches"][-1]
    sent = fake_upstream.state.uploads[created.json["input_file_id"]].data.decode()
    assert [json.loads(raw)["custom_id"] for raw in sent.splitlines()] == ["l0", "l2"]
    output = await output_lines(sdk, batch.output_file_id)
    assert [item["custom_id"] for item in output] == ["l0", "l1", "l2"]  # merged, input order
    assert online.data is not None
    assert output[1]["response"]["body"]["data"][0]["b64_json"] == online.data[0].b64_json
    rows = {row["custom_id"]: row for row in await ledger_rows(gateway, batch.id)}
    assert rows["l1"]["cache"] == "hit" and rows["l1"]["cost"] == 0 and rows["l1"]["saved"] > 0
    assert rows["l0"]["cache"] == "miss" and rows["l0"]["cost"] > 0
    assert batch.request_counts.completed == 3

    # A batch-made image is a $0 hit online.
    await gateway.app[SERVICES].cache.drain()
    raw = await sdk.images.with_raw_response.generate(
        model=MODEL, prompt="a kite 2", quality="low", size="1024x1024"
    )
    assert raw.headers["x-gateway-cache"] == "hit"
    assert raw.headers["x-gateway-cost-usd"] == "0.00"
    images = raw.parse().data
    assert images is not None
    assert images[0].b64_json == output[2]["response"]["body"]["data"][0]["b64_json"]


async def test_no_cache_on_create_sends_every_line_upstream(
    gateway: Gateway, team_sdk: MakeSdk, fake_upstream: FakeUpstream
) -> None:
    sdk = await team_sdk()
    await sdk.images.generate(model=MODEL, prompt="a kite 0", quality="low", size="1024x1024")
    await gateway.app[SERVICES].cache.drain()
    batch = await run_batch(
        sdk, line("l0", "a kite 0"), line("l1", "a kite 1"), metadata={"gateway_cache": "no-cache"}
    )
    rows = {row["custom_id"]: row for row in await ledger_rows(gateway, batch.id)}
    assert rows["l0"]["cache"] == "miss" and rows["l0"]["cost"] > 0


async def test_settling_again_after_a_crash_writes_nothing_twice(
    gateway: Gateway, team_sdk: MakeSdk
) -> None:
    sdk = await team_sdk()
    batch = await run_batch(sdk, line("a", "a moth"), line("b", "a wasp"))
    services = gateway.app[SERVICES]
    store: Any = services.store
    team = await store.get_team("team-a")
    now = dt.datetime.now(dt.UTC)
    spent = (await store.spend("team", str(team.id), Periods.at(now), now.timestamp())).spent_nanos
    # As if the process that settled it died before marking it so: another settles it again.
    await store._all("UPDATE batches SET settled_at = NULL WHERE id = :id", {"id": batch.id})
    assert await settle_batch(services, batch.id, "another-host:1:1")

    assert len(await ledger_rows(gateway, batch.id)) == 2
    again = await store.spend("team", str(team.id), Periods.at(now), now.timestamp())
    assert again.spent_nanos == spent and again.reserved_nanos == 0


async def test_a_batch_upstream_refuses_is_forgotten_and_its_hold_released(
    gateway: Gateway, team_sdk: MakeSdk, fake_upstream: FakeUpstream
) -> None:
    sdk = await team_sdk()
    uploaded = await sdk.files.create(file=("in.jsonl", jsonl(line("a", "a yak"))), purpose="batch")
    del fake_upstream.state.uploads[uploaded.id]  # upstream lost it: it refuses the batch
    with pytest.raises(openai.NotFoundError):
        await sdk.batches.create(input_file_id=uploaded.id, endpoint=GEN, completion_window="24h")
    assert [b.id async for b in sdk.batches.list()] == []
    assert await held(gateway, "team-a") == 0


async def test_an_edits_batch_is_charged_its_lines_usage(
    gateway: Gateway, team_sdk: MakeSdk
) -> None:
    sdk = await team_sdk()
    image = "data:image/png;base64," + base64.b64encode(png(64, 64)).decode()
    edit = {
        "custom_id": "e1",
        "method": "POST",
        "url": "/v1/images/edits",
        "body": {"model": MODEL, "prompt": "make it blue", "quality": "low",
                 "images": [{"image_url": image}]},
    }  # fmt: skip
    uploaded = await sdk.files.create(file=("in.jsonl", jsonl(edit)), purpose="batch")
    batch = await ended(
        sdk,
        (
            await sdk.batches.create(
                input_file_id=uploaded.id, endpoint="/v1/images/edits", completion_window="24h"
            )
        ).id,
    )
    (item,) = await output_lines(sdk, batch.output_file_id)
    usage = item["response"]["body"]["usage"]
    assert usage["input_tokens_details"]["image_tokens"] > 0
    (row,) = await ledger_rows(gateway, batch.id)
    assert row["cost"] == expected_nanos(usage)
