"""Issue 10, part 3: every upstream call has its ledger row, no hold leaks, no team overspends.

Hostile input is refused before upstream; a ledger write that fails goes to the journal and is
replayed; a client that leaves while its hold is being made does not leak it; many concurrent
requests against a small budget never spend past it."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

import openai
import pytest

from gateway.runtime.state import SERVICES
from gateway.settings import Settings
from tests.conftest import FakeUpstream, auth
from tests.e2e.test_accounting import gateway_with_key
from tests.images import png

GEN = "/v1/images/generations"
EDIT = "/v1/images/edits"
JSON = {"Content-Type": "application/json"}


async def gateway_and_key(
    aiohttp_client: Any, settings: Settings, **limits: Any
) -> tuple[Any, str]:
    client, secret, _ = await gateway_with_key(aiohttp_client, settings, **limits)
    return client, secret


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        ('{"model": "gpt-image-1.5\\ud800", "prompt": "x"}', "model"),
        ('{"model": "gpt-image-1.5", "prompt": "x", "size": "\\udfff"}', "size"),
        ('{"model": "gpt-image-1.5", "prompt": "x", "quality": "lo\\ud83dw"}', "quality"),
        ('{"model": "gpt-image-1.5", "prompt": "x", "n": 1e999}', "n"),
        ('{"model": "gpt-image-1.5", "prompt": "x", "n": Infinity}', "n"),
        ('{"model": "gpt-image-1.5", "prompt": "x", "n": NaN}', "n"),
        ('{"model": "gpt-image-1.5", "prompt": "x", "n": 100000000000000000000000}', "n"),
        ('{"model": "gpt-image-1.5", "prompt": "x", "n": 11}', "n"),
        ('{"model": "gpt-image-1.5", "prompt": "x", "partial_images": -1}', "partial_images"),
        ('{"model": "gpt-image-2", "prompt": "x", "frame_count": 10000}', "frame_count"),
        ('{"model": "' + "m" * 300 + '", "prompt": "x"}', "model"),
        (
            '{"model": "gpt-image-1.5", "prompt": "x", "deep": ' + "[" * 1000 + "]" * 1000 + "}",
            None,
        ),
        ('{"model": "gpt-image-1.5", "prompt": "x", "deep": ' + "[" * 65 + "]" * 65 + "}", None),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_hostile_json_is_a_400_before_upstream_and_has_its_row(
    gateway: Any, key: str, fake_upstream: FakeUpstream, raw: str, param: str | None, stream: bool
) -> None:
    if stream:
        raw = raw.replace('"prompt": "x"', '"prompt": "x", "stream": true')
    response = await gateway.post(GEN, data=raw.encode(), headers={**auth(key), **JSON})
    body = await response.json()
    assert response.status == 400, body
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["param"] == param
    assert fake_upstream.requests == []
    rows = await gateway.app[SERVICES].store._all(
        "SELECT status, outcome, error_code, cost_nanos FROM ledger"
    )
    assert [tuple(row) for row in rows] == [(400, "invalid", body["error"]["code"], 0)]
    # The gateway keeps serving.
    fine = await gateway.post(
        GEN, json={"model": "gpt-image-1.5", "prompt": "x", "quality": "low"}, headers=auth(key)
    )
    assert fine.status == 200


async def test_non_utf8_bytes_in_a_form_field_are_a_400_before_upstream(
    gateway: Any, key: str, fake_upstream: FakeUpstream
) -> None:
    image = png(8, 8)
    form = (
        b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\ngpt-image-1.5\xff\xfe\r\n'
        b'--b\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nx\r\n'
        b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + image + b"\r\n--b--\r\n"
    )
    headers = {**auth(key), "Content-Type": "multipart/form-data; boundary=b"}
    response = await gateway.post(EDIT, data=form, headers=headers)
    body = await response.json()
    assert (response.status, body["error"]["param"]) == (400, "model")
    assert fake_upstream.requests == []


@pytest.mark.sqlite_only
async def test_a_failed_ledger_write_is_journaled_and_replayed(
    aiohttp_client: Any,
    simulator: Callable[..., Awaitable[FakeUpstream]],
    make_settings: Callable[..., Settings],
) -> None:
    upstream = await simulator(latency_ms=1500)
    settings = make_settings(upstream_url=upstream.url, database_timeout_s=1)
    client, key = await gateway_and_key(aiohttp_client, settings)
    body = {"model": "gpt-image-1.5", "prompt": "x", "quality": "low"}
    asked = asyncio.ensure_future(client.post(GEN, json=body, headers=auth(key)))
    while not upstream.requests:  # noqa: ASYNC110 - the hold is in: upstream has been asked
        await asyncio.sleep(0.02)
    # Another process takes the database's write lock while upstream works, past the gateway's
    # busy timeout: the row cannot be written while the client is answered.
    holder = sqlite3.connect(settings.data_dir / "gateway.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        response = await asked
        assert response.status == 200  # the client's answer does not change
        cost = response.headers["x-gateway-cost-usd"]
        assert float(cost) > 0
        assert holder.execute("SELECT COUNT(*) FROM ledger").fetchone()[0] == 0
        assert await client.app[SERVICES].journal.pending() == 1
        assert client.app[SERVICES].metrics.ledger_journaled._value.get() == 1
        ready = await client.get("/readyz")
        assert ready.status == 503  # no new hold can be written: this replica cannot serve
        report = await ready.json()
        assert report["ledger"].startswith("failed: storage_unavailable")
        assert report["degraded"]["journal"] == "1 ledger rows wait in the journal"
        refused = await client.post(GEN, json=body, headers=auth(key))
        assert refused.status == 503
        assert (await refused.json())["error"]["code"] == "storage_unavailable"
        # Nothing went upstream without its hold (the other request is /readyz's probe).
        assert [r.path for r in upstream.requests if r.method == "POST"] == [GEN]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    ready = await client.get("/readyz")  # recovers by itself: its probe write passes
    assert ready.status == 200 and "journal" in (await ready.json())["degraded"]
    from gateway.runtime.lifecycle import _settle_the_books

    await _settle_the_books(client.app)
    rows = await client.app[SERVICES].store._all(
        "SELECT outcome, error_code, cost_nanos FROM ledger ORDER BY id"
    )
    assert [(row[0], row[1], row[2] / 1e9) for row in rows] == [
        ("ok", None, float(cost)),
        ("error", "storage_unavailable", 0.0),  # the refused request has its row too
    ]
    assert await client.app[SERVICES].journal.pending() == 0
    assert client.app[SERVICES].metrics.ledger_replayed._value.get() == 2
    assert "degraded" not in (await (await client.get("/readyz")).json())
    # Replaying again writes nothing twice.
    assert await client.app[SERVICES].journal.replay(client.app[SERVICES].store) == (0, 0)


@pytest.mark.sqlite_only
async def test_a_client_leaving_while_its_hold_is_made_leaks_nothing(
    aiohttp_client: Any, fake_upstream: FakeUpstream, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(upstream_url=fake_upstream.url)
    client, key = await gateway_and_key(aiohttp_client, settings, team_budget_usd="10")
    holder = sqlite3.connect(settings.data_dir / "gateway.db", isolation_level=None)
    body = {"model": "gpt-image-1.5", "prompt": "x", "quality": "low"}
    for _ in range(5):
        holder.execute("BEGIN EXCLUSIVE")  # the hold waits on the lock...
        request = asyncio.create_task(client.post(GEN, json=body, headers=auth(key)))
        await asyncio.sleep(0.3)
        request.cancel()  # ...and the client leaves meanwhile
        with pytest.raises(asyncio.CancelledError):
            await request
        holder.execute("ROLLBACK")  # now the hold is made, after its client left
        await asyncio.sleep(0.3)
    holder.close()
    store = client.app[SERVICES].store
    for _ in range(50):
        if len(await store._all("SELECT id FROM ledger")) == 5:
            break
        await asyncio.sleep(0.1)
    assert await store._all("SELECT id FROM reservations") == []
    rows = await store._all("SELECT outcome, cost_nanos FROM ledger")
    assert [tuple(row) for row in rows] == [("client_gone", 0)] * 5
    assert fake_upstream.requests == []


@pytest.mark.parametrize("endpoint", ["generations", "edits"])
async def test_concurrent_requests_never_spend_past_a_small_budget(
    aiohttp_client: Any,
    fake_upstream: FakeUpstream,
    make_settings: Callable[..., Settings],
    endpoint: str,
) -> None:
    """The guarantee: spent never exceeds the budget while every estimate is an upper bound
    of its request's charge (checked here per row against the simulator's own usage)."""
    settings = make_settings(upstream_url=fake_upstream.url)
    client, key = await gateway_and_key(aiohttp_client, settings, team_budget_usd="0.50")
    sdk = openai.AsyncOpenAI(
        base_url=str(client.make_url("/v1")), api_key=key, max_retries=0, timeout=60
    )
    images = [(f"i{i}.png", png(1600 + 16 * i, 1200, seed=i), "image/png") for i in range(6)]

    async def one(i: int) -> str:
        try:
            if endpoint == "edits":
                await sdk.images.edit(
                    model="gpt-image-1.5",
                    prompt=f"edit {i}",
                    image=images,
                    quality="medium",
                    input_fidelity="high",
                )
            else:
                await sdk.images.generate(
                    model="gpt-image-2", prompt=f"gen {i}", quality="high", size="1536x1024"
                )
            return "ok"
        except openai.RateLimitError as exc:
            assert exc.code == "insufficient_quota"
            return "refused"

    async with sdk:
        results = await asyncio.gather(*(one(i) for i in range(30)))
    assert "ok" in results and "refused" in results
    store = client.app[SERVICES].store
    rows = await store._all("SELECT cost_nanos, estimate_nanos FROM ledger WHERE outcome = 'ok'")
    assert all(cost <= estimate for cost, estimate in rows)
    spent = sum(cost for cost, _ in rows)
    assert 0 < spent <= 500_000_000
    assert await store._all("SELECT id FROM reservations") == []
