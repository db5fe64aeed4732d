"""Budget alerts by webhook, to a local receiver: each threshold of a budget sends one event per
period, signed with the webhook's secret; a receiver that fails is tried again with the same
event id until it answers 2xx; one that hangs slows no request; private URLs are refused unless
allowed."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import openai
import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.settings import Settings
from tests.conftest import ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SECRET = "s3cret-for-the-test-receiver"


@pytest.fixture
def gateway_overrides() -> dict[str, Any]:
    return {"webhook_allow_private": True, "webhook_retry_s": 0.2, "webhook_timeout_s": 1.0}


class Receiver:
    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []  # answered in turn; then 200
        self.hang = False

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append((dict(request.headers), await request.read()))
        if self.hang:
            await asyncio.sleep(30)
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
async def receiver(aiohttp_server: Any) -> tuple[Receiver, str]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/hook", found.handle)
    server = await aiohttp_server(app)
    return found, str(server.make_url("/hook"))


async def setup(gateway: Any, url: str, make_key: Callable[..., Any]) -> openai.AsyncOpenAI:
    response = await gateway.post(
        "/admin/webhooks", json={"url": url, "secret": SECRET}, headers=ADMIN
    )
    assert response.status == 201, await response.text()
    assert (await response.json())["secret"] == SECRET
    await gateway.post(
        "/admin/teams",
        json={"name": "t", "budget_usd": "0.05", "alert_thresholds": ["0.02", "0.04"]},
        headers=ADMIN,
    )
    key = await make_key("t")
    return openai.AsyncOpenAI(base_url=str(gateway.make_url("/v1")), api_key=key, max_retries=0)


async def generate(sdk: openai.AsyncOpenAI, prompt: str) -> None:
    await sdk.images.generate(
        model="gpt-image-1-mini", prompt=prompt, quality="low", size="1024x1024"
    )


async def until(condition: Callable[[], bool], seconds: float = 8) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_each_threshold_is_sent_once_per_period_signed(
    gateway: Any, receiver: tuple[Receiver, str], make_key: Callable[..., Any]
) -> None:
    found, url = receiver
    sdk = await setup(gateway, url, make_key)
    for prompt in ("one", "two", "three"):  # the first crosses both thresholds; then none
        await generate(sdk, prompt)
    await until(lambda: len(found.got) >= 2)
    await asyncio.sleep(0.5)  # nothing more comes
    assert len(found.got) == 2
    bodies = []
    for headers, body in found.got:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Gateway-Signature"] == expected
        event = json.loads(body)
        assert headers["X-Gateway-Event-Id"] == event["id"]
        bodies.append(event)
    assert sorted(e["threshold"] for e in bodies) == ["0.02", "0.04"]
    assert {e["type"] for e in bodies} == {"budget.threshold"}
    assert all(
        e["team"] == "t" and e["period"] == "total" and e["budget_usd"] == "0.05" for e in bodies
    )
    await sdk.close()


async def test_a_failing_receiver_gets_the_same_event_again_until_it_answers(
    gateway: Any, receiver: tuple[Receiver, str], make_key: Callable[..., Any]
) -> None:
    found, url = receiver
    found.statuses = [500, 500]
    sdk = await setup(gateway, url, make_key)
    await gateway.patch("/admin/teams/t", json={"alert_thresholds": ["0.02"]}, headers=ADMIN)
    await generate(sdk, "one")
    await until(lambda: len(found.got) >= 3)
    ids = {headers["X-Gateway-Event-Id"] for headers, _ in found.got}
    assert len(ids) == 1
    webhook_id = (await (await gateway.get("/admin/webhooks", headers=ADMIN)).json())["data"][0]
    listed = await gateway.get(f"/admin/webhooks/{webhook_id['id']}/deliveries", headers=ADMIN)
    (delivery,) = (await listed.json())["data"]
    await until(lambda: True)
    assert delivery["attempts"] == 3 and delivery["status"] == "delivered"
    assert webhook_id["secret"].endswith("…") and SECRET not in json.dumps(webhook_id)
    metrics = await (await gateway.get("/metrics")).text()
    assert 'gateway_webhook_deliveries_total{result="failed"} 2.0' in metrics
    await sdk.close()


async def test_a_hanging_receiver_slows_no_request(
    gateway: Any, receiver: tuple[Receiver, str], make_key: Callable[..., Any]
) -> None:
    found, url = receiver
    found.hang = True
    sdk = await setup(gateway, url, make_key)
    await generate(sdk, "warm")  # crosses both thresholds: two deliveries start, and hang
    await until(lambda: len(found.got) >= 2)
    started = time.monotonic()
    for prompt in ("a", "b", "c"):
        await generate(sdk, prompt)
    assert time.monotonic() - started < 1.0
    await sdk.close()


async def test_private_urls_are_refused_unless_allowed(
    aiohttp_client: Any, make_settings: Callable[..., Settings]
) -> None:
    client = await aiohttp_client(create_app(make_settings()))
    for url in ("http://127.0.0.1:9/hook", "http://10.1.2.3/x", "ftp://example.com/"):
        response = await client.post("/admin/webhooks", json={"url": url}, headers=ADMIN)
        assert response.status == 400, url
        assert (await response.json())["error"]["param"] == "url"
