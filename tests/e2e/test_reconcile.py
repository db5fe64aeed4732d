"""Reconciliation with the invoice: the ledger's upstream cost per day and model equals what the
simulator's Costs API says it billed for the same traffic (image requests, a cache hit that went
nowhere, a batch, a response), and a request upstream billed twice is flagged exactly."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
from decimal import Decimal
from typing import Any

import openai
import pytest

from gateway.runtime.state import SERVICES
from tests.conftest import ADMIN_TOKEN, UPSTREAM_KEY

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TODAY = dt.datetime.now(dt.UTC).date().isoformat()


@pytest.fixture
def gateway_overrides() -> dict[str, Any]:
    return {"upstream_admin_key": UPSTREAM_KEY, "cache_enabled": True}


async def reconciled(gateway: Any) -> dict[str, Any]:
    response = await gateway.get(
        "/admin/reconcile", params={"since": TODAY, "tolerance": "0.000001"}, headers=ADMIN
    )
    assert response.status == 200, await response.text()
    return dict(await response.json())


async def test_the_ledger_matches_the_invoice_and_a_double_bill_is_flagged(
    gateway: Any, sdk: openai.AsyncOpenAI
) -> None:
    for prompt in ("a", "b", "a"):  # the second "a" is a cache hit: upstream billed nothing
        await sdk.images.generate(
            model="gpt-image-1-mini", prompt=prompt, quality="low", size="1024x1024"
        )
        await asyncio.sleep(0.05)
    await sdk.images.generate(model="gpt-image-1.5", prompt="c", quality="medium", size="1024x1536")
    await sdk.responses.create(
        model="gpt-5",
        input="a kite",
        tools=[{"type": "image_generation", "model": "gpt-image-1-mini", "quality": "low"}],
    )
    line = {
        "custom_id": "1",
        "method": "POST",
        "url": "/v1/images/generations",
        "body": {"model": "gpt-image-1-mini", "prompt": "batch line", "quality": "low"},
    }
    uploaded = await sdk.files.create(
        file=("in.jsonl", io.BytesIO(json.dumps(line).encode())), purpose="batch"
    )
    batch = await sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/images/generations", completion_window="24h"
    )
    for _ in range(100):
        if (await sdk.batches.retrieve(batch.id)).status == "completed":
            break
        await asyncio.sleep(0.05)

    clean = await reconciled(gateway)
    assert clean["differences"] == [] and clean["image_differences"] == [], clean
    assert Decimal(clean["ledger_usd"]) > 0 and clean["compared"] == 3  # mini, 1.5, gpt-5

    billed_twice = await sdk.images.with_raw_response.generate(
        model="gpt-image-1.5", prompt="d [bill-twice]", quality="low", size="1024x1024"
    )
    flagged = await reconciled(gateway)
    (difference,) = flagged["differences"]
    (images,) = flagged["image_differences"]
    assert (images["model"], images["ledger_images"], images["upstream_images"]) == (
        "gpt-image-1.5",
        2,
        3,
    )
    assert (difference["day"], difference["model"]) == (TODAY, "gpt-image-1.5")
    cost = Decimal(billed_twice.headers["x-gateway-cost-usd"])
    assert abs(-Decimal(difference["difference_usd"]) - cost) < Decimal("0.000001")
    metrics = await (await gateway.get("/metrics")).text()
    assert "gateway_reconcile_differences 2.0" in metrics


async def test_the_cli_exits_1_on_a_difference(
    gateway: Any, sdk: openai.AsyncOpenAI, fake_upstream: Any
) -> None:
    import os
    import sys

    await sdk.images.generate(
        model="gpt-image-1-mini", prompt="e [bill-twice]", quality="low", size="1024x1024"
    )
    settings = gateway.app[SERVICES].settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_DATA_DIR=str(settings.data_dir),
        GATEWAY_UPSTREAM_URL=fake_upstream.url,
        GATEWAY_UPSTREAM_ADMIN_KEY=UPSTREAM_KEY,
    )
    if settings.database_url:
        env["GATEWAY_DATABASE_URL"] = settings.database_url
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "reconcile",
        "--since",
        TODAY,
        "--json",
        "--tolerance",
        "0.000001",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 1, err.decode()
    (difference,) = json.loads(out)["differences"]
    assert difference["model"] == "gpt-image-1-mini"
