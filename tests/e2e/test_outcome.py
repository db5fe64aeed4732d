"""One outcome per request, read by all four reports: drive every outcome a request can end with
through the gateway, then the ledger's rows, `/metrics`, the log lines and the usage report must
count the same (`orphaned` is not a request's own ending: tests/test_crash.py drives it)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from gateway.accounting.stages import estimate_cost
from gateway.accounting.usage_report import usage_report
from gateway.admin import accounts
from gateway.app import create_app
from gateway.outcome import Outcome
from gateway.proxy import pipeline
from gateway.runtime.state import SERVICES
from gateway.settings import Settings
from tests.conftest import Reply, ScriptedUpstream, auth
from tests.e2e.test_logs import log_lines, requests_logged
from tests.e2e.test_metrics import scrape, value
from tests.e2e.test_usage_reading import event, usage

__all__ = ["log_lines"]  # a fixture, used by name

GEN = "/v1/images/generations"
BODY = {"model": "gpt-image-1.5", "prompt": "a red kite", "quality": "low"}
WITH_USAGE = json.dumps({"created": 1, "data": [{"b64_json": "eA=="}], "usage": usage(7, 100)})


async def test_every_outcome_is_counted_alike_by_ledger_metrics_log_and_report(
    aiohttp_client: Any,
    make_settings: Callable[..., Settings],
    scripted_upstream: ScriptedUpstream,
    log_lines: Callable[[], list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gateway = await aiohttp_client(create_app(make_settings(upstream_url=scripted_upstream.url)))
    store = gateway.app[SERVICES].store
    await accounts.create_team(store, accounts.TeamCreate(name="t"))
    key = (await accounts.create_key(store, accounts.KeyCreate(team="t"))).secret
    poor = await accounts.create_key(store, accounts.KeyCreate(team="t", budget_usd="0.000001"))
    slow = await accounts.create_key(store, accounts.KeyCreate(team="t", rpm=1))
    narrow = await accounts.create_key(store, accounts.KeyCreate(team="t", max_n=1))
    replies = scripted_upstream.replies

    async def post(secret: str, body: dict[str, Any] = BODY) -> int:
        response = await gateway.post(GEN, json=body, headers=auth(secret))
        await response.read()
        status: int = response.status
        return status

    # ok, and usage_missing: a 200 without usage.
    replies.append(Reply(WITH_USAGE.encode()))
    assert await post(key) == 200
    replies.append(Reply(json.dumps({"created": 1, "data": [{"b64_json": "eA=="}]}).encode()))
    assert await post(key) == 200
    # The gateway's own refusals: no key, a budget, a rate limit, an invalid request, a policy.
    assert await post("sk-gw-not-a-key") == 401
    assert await post(poor.secret) == 429
    replies.append(Reply(WITH_USAGE.encode()))
    assert await post(slow.secret) == 200  # rpm=1: the first is admitted...
    assert await post(slow.secret) == 429  # ...the second is not
    assert await post(key, {**BODY, "n": 11}) == 400
    assert await post(narrow.secret, {**BODY, "n": 2}) == 403  # outside its key's policy
    # upstream_error: upstream's own error, passed through.
    replies.append(Reply(b'{"error": {"message": "down", "type": "server_error"}}', status=500))
    assert await post(key) == 500
    # stream_cut: a stream that ends before its completed event.
    partial = event(
        "image_generation.partial_image", {"b64_json": "eA==", "partial_image_index": 0}
    )
    replies.append(Reply(chunks=[partial], cut=True, headers={"Content-Type": "text/event-stream"}))
    assert await post(key, {**BODY, "stream": True, "partial_images": 1}) == 200

    # error: the gateway itself fails (a bug), after authentication.
    async def broken(flow: Any) -> None:
        raise RuntimeError("a bug")

    stages = tuple(broken if s is estimate_cost else s for s in pipeline.STAGES)
    monkeypatch.setattr(pipeline, "STAGES", stages)
    monkeypatch.setattr(pipeline.run, "__defaults__", (stages,))
    assert await post(key) == 500
    monkeypatch.undo()
    # client_gone: the client leaves before the upstream call begins (its body never ends).
    _, writer = await asyncio.open_connection(gateway.host, gateway.port)
    writer.write(
        f"POST {GEN} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{".encode()
    )
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    for _ in range(100):  # its row is written as its handler unwinds
        if len(await store._all("SELECT id FROM ledger")) == 11:
            break
        await asyncio.sleep(0.02)

    ledger = Counter(
        {
            outcome: count
            for outcome, count in await store._all(
                "SELECT outcome, COUNT(*) FROM ledger GROUP BY outcome"
            )
        }
    )
    # Every outcome a request can end with was driven (refused_auth has no ledger row).
    ended = set(Outcome) - {Outcome.ORPHANED}
    assert set(ledger) == ended - {Outcome.REFUSED_AUTH}, ledger
    samples = await scrape(gateway)
    metrics = Counter(
        {
            o.value: int(value(samples, "gateway_request_outcomes_total", outcome=o.value))
            for o in ended
        }
    )
    logged = Counter(line["outcome"] for line in requests_logged(log_lines()))
    assert metrics == logged == ledger + Counter({Outcome.REFUSED_AUTH.value: 1})
    refused = sum(count for outcome, count in metrics.items() if Outcome(outcome).refused)
    assert value(samples, "gateway_refusals_total") == refused
    report = await usage_report(store)
    assert report.total["requests"] == sum(ledger.values())
    assert report.total["refused"] == refused - 1  # all but the one without a key
