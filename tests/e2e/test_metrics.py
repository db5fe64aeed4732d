"""`GET /metrics` after real traffic: the official SDK drives hits, misses, a stream, a
coalesced pair, refusals of every kind and upstream failures; the scraped counters must equal
what was sent and what the ledger recorded."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.admin import accounts
from gateway.runtime.state import SERVICES
from tests.conftest import ADMIN_TOKEN, FakeUpstream, auth
from tests.e2e.test_cache import stored

LOW: dict[str, Any] = {"model": "gpt-image-1", "quality": "low", "size": "1024x1024"}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def gateway_overrides() -> dict[str, Any]:
    return {"cache_enabled": True, "upstream_read_timeout_s": 0.5}


def sdk_for(gateway: Any, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=str(gateway.make_url("/v1")), api_key=key, max_retries=0, timeout=20
    )


async def scrape(gateway: Any, headers: dict[str, str] | None = None) -> Samples:
    response = await gateway.get("/metrics", headers=headers or {})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


async def drive_traffic(gateway: Any, make_key: Callable[..., Any]) -> None:
    """The traffic the assertions below count, request by request."""
    alpha = sdk_for(gateway, await make_key("alpha"))
    store = gateway.app[SERVICES].store
    await accounts.create_team(store, accounts.TeamCreate(name="poor", budget_usd="0.001"))
    poor = sdk_for(gateway, await make_key("poor"))
    slow = sdk_for(gateway, await make_key("slow", rpm=1))
    few = sdk_for(gateway, await make_key("few", ipm=1))
    stranger = sdk_for(gateway, "sk-gw-not-a-key")
    try:
        # 1 miss, then 1 hit of it.
        await alpha.images.generate(prompt="a sea otter", **LOW)
        await stored(gateway)
        await alpha.images.generate(prompt="a sea otter", **LOW)
        # 1 stream with 2 partial images, read to its end.
        stream = await alpha.images.generate(prompt="a heron", stream=True, partial_images=2, **LOW)
        events = [event.type async for event in stream]
        assert events[-1] == "image_generation.completed" and len(events) == 3
        # 2 identical requests at once: one goes upstream (miss), the other shares it.
        slowly: dict[str, Any] = {"extra_headers": {"x-simulator-fault": "slow:300"}}
        await asyncio.gather(
            alpha.images.generate(prompt="a crane", **LOW, **slowly),
            alpha.images.generate(prompt="a crane", **LOW, **slowly),
        )
        # Upstream failures: an error status, a timeout, a stream cut after 1 event.
        with pytest.raises(openai.InternalServerError):
            await alpha.images.generate(
                prompt="a bad day", **LOW, extra_headers={"x-simulator-fault": "error:500"}
            )
        with pytest.raises(openai.APIStatusError) as timed_out:
            await alpha.images.generate(
                prompt="a long wait", **LOW, extra_headers={"x-simulator-fault": "timeout"}
            )
        assert timed_out.value.status_code == 504
        cut = await alpha.images.generate(
            prompt="a cut",
            stream=True,
            partial_images=2,
            **LOW,
            extra_headers={"x-simulator-fault": "cut:1"},
        )
        with pytest.raises(openai.APIError, match="cut off"):
            async for _ in cut:
                pass
        # Refusals: budget, rpm, ipm, auth, invalid (an unpriced model).
        with pytest.raises(openai.RateLimitError, match="budget"):
            await poor.images.generate(prompt="too dear", **LOW)
        await slow.images.generate(prompt="once", **LOW)
        with pytest.raises(openai.RateLimitError):
            await slow.images.generate(prompt="twice", **LOW)
        with pytest.raises(openai.RateLimitError):
            await few.images.generate(prompt="two at once", n=2, **LOW)
        with pytest.raises(openai.AuthenticationError):
            await stranger.images.generate(prompt="who am I", **LOW)
        with pytest.raises(openai.BadRequestError):
            await alpha.images.generate(prompt="priceless", model="no-such-model")
    finally:
        for client in (alpha, poor, slow, few, stranger):
            await client.close()
    await stored(gateway)


async def ledger_sums(gateway: Any) -> dict[str, dict[str, int]]:
    rows = await gateway.app[SERVICES].store._all(
        "SELECT t.name, SUM(cost_nanos), SUM(saved_nanos), SUM(images),"
        " SUM(text_input_tokens), SUM(image_output_tokens), COUNT(*)"
        " FROM ledger JOIN teams t ON t.id = team_id GROUP BY t.name"
    )
    names = ("cost", "saved", "images", "text_input", "image_output", "rows")
    return {row[0]: dict(zip(names, row[1:], strict=True)) for row in rows}


async def test_counters_match_the_traffic_and_the_ledger(
    gateway: Any, make_key: Callable[..., Any], fake_upstream: FakeUpstream
) -> None:
    await drive_traffic(gateway, make_key)
    samples = await scrape(gateway)
    ledger = await ledger_sums(gateway)
    requests = "gateway_requests_total"
    gen = {"endpoint": "generations"}

    # Every request was counted once; 14 were sent.
    assert value(samples, requests) == 14
    assert value(samples, requests, cache_status="hit", status_class="2xx") == 1
    assert value(samples, requests, cache_status="coalesced", status_class="2xx") == 1
    # Misses that answered 200: the first otter, the heron stream, the crane leader, the cut
    # stream (its status was 200 before the cut), and `once`.
    assert value(samples, requests, cache_status="miss", status_class="2xx") == 5
    assert value(samples, requests, cache_status="miss", status_class="5xx") == 2
    assert value(samples, requests, status_class="4xx") == 5
    assert value(samples, requests, model="none") == 1  # the stranger: no key, no model known
    assert value(samples, requests, model="unpriced") == 1
    assert value(samples, requests, model="no-such-model") == 0  # never a client's string

    assert value(samples, "gateway_cache_hits_total", team="alpha") == 1
    assert value(samples, "gateway_coalesced_requests_total", team="alpha") == 1
    assert value(samples, "gateway_cache_misses_total", team="alpha") == 6
    assert value(samples, "gateway_cache_misses_total", team="slow") == 1

    for reason, team in [
        ("budget", "poor"),
        ("rpm", "slow"),
        ("ipm", "few"),
        ("auth", ""),
        ("invalid", "alpha"),
    ]:
        assert value(samples, "gateway_refusals_total", reason=reason, team=team) == 1, reason
    assert value(samples, "gateway_refusals_total") == 5

    errors = "gateway_upstream_errors_total"
    assert value(samples, errors, kind="status", status="500", **gen) == 1
    assert value(samples, errors, kind="timeout", **gen) == 1
    assert value(samples, errors, kind="stream_cut", **gen) == 1
    assert value(samples, errors) == 3
    # One upstream call each: otter, heron, crane, bad day, long wait, cut, once.
    assert value(samples, "gateway_upstream_duration_seconds_count") == 7
    assert len(fake_upstream.requests) == 7

    # Money and tokens: exactly what the ledger holds (USD floats, to the nano-dollar).
    for team, sums in ledger.items():
        cost = value(samples, "gateway_cost_usd_total", team=team)
        saved = value(samples, "gateway_saved_usd_total", team=team)
        assert round(cost * 1e9) == sums["cost"], team
        assert round(saved * 1e9) == sums["saved"], team
    assert ledger["alpha"]["saved"] > 0 and ledger["alpha"]["cost"] > 0
    tokens = "gateway_tokens_total"
    # Rows served by the cache carry no usage, so the ledger's token sums are upstream's.
    assert value(samples, tokens, kind="text_input") == sum(
        s["text_input"] for s in ledger.values()
    )
    assert value(samples, tokens, kind="image_output") == sum(
        s["image_output"] for s in ledger.values()
    )
    # Images: otter, crane and `once` (1 each) and the heron stream came from upstream; the
    # otter hit and the coalesced crane from the cache.
    assert value(samples, "gateway_images_total", cache_status="miss") == 4
    assert value(samples, "gateway_images_total", cache_status="hit") == 1
    assert value(samples, "gateway_images_total", cache_status="coalesced") == 1
    assert value(samples, "gateway_images_total") == sum(s["images"] for s in ledger.values())

    # Latency: every request observed once; streams (heron, cut) saw a first event.
    assert value(samples, "gateway_request_duration_seconds_count") == 14
    assert value(samples, "gateway_stream_first_event_seconds_count") == 2
    assert value(samples, "gateway_requests_in_flight") == 0
    assert value(samples, "gateway_streams_open") == 0


async def test_store_gauges_match_the_admin_api(gateway: Any, make_key: Callable[..., Any]) -> None:
    await drive_traffic(gateway, make_key)
    samples = await scrape(gateway)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    teams = await (await gateway.get("/admin/teams", headers=admin)).json()
    by_name = {team["name"]: team for team in teams["data"]}
    assert value(samples, "gateway_budget_remaining_usd", team="poor") == float(
        Decimal(by_name["poor"]["remaining_usd"])
    )
    assert value(samples, "gateway_budget_usd", team="poor") == 0.001
    # Teams without a budget have no remaining budget to show, only what they spent.
    assert ("gateway_budget_remaining_usd", frozenset({("team", "alpha")})) not in samples
    assert value(samples, "gateway_budget_spent_usd", team="alpha") == float(
        Decimal(by_name["alpha"]["spent_usd"])
    )
    stats = await gateway.app[SERVICES].cache.stats()
    assert value(samples, "gateway_cache_entries") == stats["entries"] > 0
    assert value(samples, "gateway_cache_bytes") == stats["bytes"] > 0
    assert value(samples, "gateway_store_up") == 1


async def test_purges_count_as_evictions(
    gateway: Any, make_key: Callable[..., Any], sdk: openai.AsyncOpenAI
) -> None:
    await sdk.images.generate(prompt="one", **LOW)
    await sdk.images.generate(prompt="two", **LOW)
    await stored(gateway)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    purged = await gateway.post("/admin/cache/purge", json={}, headers=admin)
    assert purged.status == 200
    samples = await scrape(gateway)
    assert value(samples, "gateway_cache_evictions_total", reason="purge") == 2
    assert value(samples, "gateway_cache_entries") == 0


async def test_an_open_stream_and_a_request_in_flight_show_while_they_last(
    gateway: Any, key: str
) -> None:
    response = await gateway.post(
        "/v1/images/generations",
        json={"prompt": "never ends", "stream": True, **LOW},
        headers={**auth(key), "x-simulator-fault": "hang-stream"},
    )
    assert response.status == 200
    await response.content.readuntil(b"\n\n")  # the first event has arrived
    samples = await scrape(gateway)
    assert value(samples, "gateway_streams_open") == 1
    assert value(samples, "gateway_requests_in_flight") == 1
    response.close()


@pytest.mark.parametrize("gateway_overrides", [{"metrics_key_labels": True}])
async def test_key_ids_are_labels_only_when_configured(
    gateway: Any, make_key: Callable[..., Any]
) -> None:
    secret = await make_key("alpha")
    client = sdk_for(gateway, secret)
    await client.images.generate(prompt="labelled", **LOW)
    await client.close()
    key_id = (await gateway.app[SERVICES].store._all("SELECT id FROM api_keys"))[0][0]
    samples = await scrape(gateway)
    assert value(samples, "gateway_requests_total", key=key_id) == 1
    assert value(samples, "gateway_cost_usd_total", key=key_id) > 0


async def test_without_the_option_no_label_names_a_key_or_a_prompt(
    gateway: Any, key: str, sdk: openai.AsyncOpenAI
) -> None:
    await sdk.images.generate(prompt="a secret prompt", **LOW)
    text = await (await gateway.get("/metrics")).text()
    key_ids = [row[0] for row in await gateway.app[SERVICES].store._all("SELECT id FROM api_keys")]
    assert all(key_id not in text for key_id in key_ids)
    assert "secret prompt" not in text and key not in text
    labels = defaultdict(set)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for name in sample.labels:
                labels[name].add(family.name)
    assert "key" not in labels


@pytest.mark.parametrize("gateway_overrides", [{"metrics_token": "scrape-me"}])
async def test_a_metrics_token_guards_the_page(gateway: Any) -> None:
    refused = await gateway.get("/metrics")
    assert refused.status == 401
    assert (await refused.json())["error"]["code"] == "invalid_token"
    wrong = await gateway.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    samples = await scrape(gateway, {"Authorization": "Bearer scrape-me"})
    assert value(samples, "gateway_store_up") == 1
