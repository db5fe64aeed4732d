"""Clients that leave mid-upload or mid-stream leave no temporary file and no task behind."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from gateway.accounting.periods import Periods
from gateway.admin import accounts
from gateway.app import create_app
from gateway.runtime.state import SERVICES
from gateway.settings import Settings
from simulator import SimulatorConfig, create_simulator_app
from tests.conftest import UPSTREAM_KEY


async def settle(baseline: int, spool_dir: Path, seconds: float = 2.0) -> tuple[int, list[Path]]:
    """Wait until the loop is back to `baseline` tasks and the spool is empty (or time is up)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        tasks, files = len(asyncio.all_tasks()), list(spool_dir.glob("body-*"))
        if (tasks <= baseline and not files) or asyncio.get_running_loop().time() > deadline:
            return tasks, files
        await asyncio.sleep(0.02)


async def start_gateway(
    aiohttp_client: Any, settings: Settings, budget_usd: str | None = None
) -> tuple[Any, str]:
    client = await aiohttp_client(create_app(settings))
    store = client.app[SERVICES].store
    await accounts.create_team(store, accounts.TeamCreate(name="t", budget_usd=budget_usd))
    return client, (await accounts.create_key(store, accounts.KeyCreate(team="t"))).secret


async def test_client_leaving_mid_upload_leaves_no_file_and_no_task(
    aiohttp_client: Any, aiohttp_server: Any, make_settings: Callable[..., Settings]
) -> None:
    upstream = await aiohttp_server(create_simulator_app(SimulatorConfig(api_key=UPSTREAM_KEY)))
    settings = make_settings(upstream_url=str(upstream.make_url("/v1")))
    client, key = await start_gateway(aiohttp_client, settings)
    baseline = len(asyncio.all_tasks())

    _, writer = await asyncio.open_connection(client.host, client.port)
    head = (
        "POST /v1/images/edits HTTP/1.1\r\n"
        f"Host: {client.host}\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: multipart/form-data; boundary=BOUNDARY\r\n"
        "Content-Length: 5000000\r\n\r\n"
        '--BOUNDARY\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    writer.write(head + os.urandom(1_000_000))  # well past the spool threshold
    await writer.drain()
    # The upload is being spooled to disk now.
    for _ in range(100):
        if list(settings.spool_dir.glob("body-*")):
            break
        await asyncio.sleep(0.01)
    assert list(settings.spool_dir.glob("body-*")), "the upload should have been spooled"
    writer.close()
    await writer.wait_closed()

    tasks, files = await settle(baseline, settings.spool_dir)
    assert files == []
    assert tasks <= baseline


async def ledger_rows(client: Any, wait_s: float = 3.0) -> list[Any]:
    """The ledger's rows once at least one is there (or after `wait_s`)."""
    store = client.app[SERVICES].store
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        rows: list[Any] = await store._all(
            "SELECT outcome, cost_nanos, image_output_tokens FROM ledger WHERE stream = 1"
        )
        if rows or asyncio.get_running_loop().time() > deadline:
            return rows
        await asyncio.sleep(0.02)


async def warm_up(client: Any, key: str) -> int:
    """One whole request, so the gateway's pooled upstream connection exists (an idle keep-alive
    connection is a task on the upstream side); then the tasks running at rest."""
    response = await client.post(
        "/v1/images/generations",
        json={"model": "gpt-image-1", "prompt": "warm", "quality": "low"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status == 200
    return len(asyncio.all_tasks())


async def leave_after_first_event(client: Any, key: str, fault: str | None = None) -> None:
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            client.make_url("/v1/images/generations"),
            json={
                "model": "gpt-image-1",
                "prompt": "p",
                "stream": True,
                "partial_images": 3,
                "quality": "low",
                "size": "1024x1024",
            },
            headers={"Authorization": f"Bearer {key}"}
            | ({"x-simulator-fault": fault} if fault else {}),
        )
        first = await response.content.readuntil(b"\n\n")
        assert first.startswith(b"event: image_generation.partial_image")
        response.close()  # leave mid-stream: drops the connection


async def test_a_stream_the_client_abandons_stops_being_read_and_is_charged_its_estimate(
    aiohttp_client: Any, aiohttp_server: Any, make_settings: Callable[..., Settings]
) -> None:
    upstream = await aiohttp_server(
        create_simulator_app(SimulatorConfig(api_key=UPSTREAM_KEY, partial_interval_ms=100))
    )
    settings = make_settings(upstream_url=str(upstream.make_url("/v1")))
    client, key = await start_gateway(aiohttp_client, settings, budget_usd="1")
    baseline = await warm_up(client, key)
    await leave_after_first_event(client, key)

    rows = await ledger_rows(client)
    # No one else waits for it (no cache, no twin), so it is read no further; upstream may still
    # make the image, so the estimate is charged: 272 tokens (low, 1024x1024) + 3 partial images
    # x 100 = 572 image tokens x $40/1M = $0.02288, plus 1 prompt byte x $5/1M = $0.000005.
    assert rows == [("stream_cut", 22_885_000, 0)]
    tasks, files = await settle(baseline, settings.spool_dir)
    assert tasks <= baseline and files == []
    team = await client.app[SERVICES].store.spend(
        "team", "1", Periods.at(dt.datetime.now(dt.UTC)), 0
    )
    # the warm-up (272 + 1 tokens: 10_885_000) and the abandoned stream; nothing still held
    assert (team.spent_nanos, team.reserved_nanos) == (10_885_000 + 22_885_000, 0)


async def test_an_abandoned_stream_whose_upstream_goes_quiet_is_charged_what_arrived(
    aiohttp_client: Any, aiohttp_server: Any, make_settings: Callable[..., Settings]
) -> None:
    upstream = await aiohttp_server(create_simulator_app(SimulatorConfig(api_key=UPSTREAM_KEY)))
    settings = make_settings(upstream_url=str(upstream.make_url("/v1")), upstream_read_timeout_s=1)
    client, key = await start_gateway(aiohttp_client, settings, budget_usd="1")
    baseline = await warm_up(client, key)
    await leave_after_first_event(client, key, fault="hang-stream")

    # Upstream sent one partial image, then nothing until the read timeout: 100 image tokens
    # x $40/1M = $0.004, and the input upstream read, 1 prompt byte x $5/1M = $0.000005.
    assert await ledger_rows(client) == [("stream_cut", 4_005_000, 0)]
    tasks, files = await settle(baseline, settings.spool_dir)
    assert tasks <= baseline and files == []


async def test_spooled_bodies_are_removed_after_success_and_after_upstream_failure(
    aiohttp_client: Any, aiohttp_server: Any, make_settings: Callable[..., Settings]
) -> None:
    upstream = await aiohttp_server(create_simulator_app(SimulatorConfig(api_key=UPSTREAM_KEY)))
    settings = make_settings(upstream_url=str(upstream.make_url("/v1")))
    client, key = await start_gateway(aiohttp_client, settings)
    for fault, status in (("", 200), ("error:500", 500), ("disconnect", 502)):
        form = aiohttp.FormData()
        form.add_field("prompt", "p")
        form.add_field("model", "gpt-image-1")
        form.add_field("image", os.urandom(300_000), filename="a.png", content_type="image/png")
        headers = {"Authorization": f"Bearer {key}"} | (
            {"x-simulator-fault": fault} if fault else {}
        )
        response = await client.post("/v1/images/edits", data=form, headers=headers)
        assert response.status == status, await response.text()
        # A relayed response can reach the client a moment before the handler's cleanup ran.
        _, files = await settle(len(asyncio.all_tasks()), settings.spool_dir)
        assert files == [], fault


async def test_a_client_leaving_mid_upload_gets_a_client_gone_row_and_no_charge(
    aiohttp_client: Any, aiohttp_server: Any, make_settings: Callable[..., Settings]
) -> None:
    upstream = await aiohttp_server(create_simulator_app(SimulatorConfig(api_key=UPSTREAM_KEY)))
    settings = make_settings(upstream_url=str(upstream.make_url("/v1")))
    client, key = await start_gateway(aiohttp_client, settings, budget_usd="1")
    _, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        (
            "POST /v1/images/generations HTTP/1.1\r\n"
            f"Host: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            'Content-Length: 1000\r\n\r\n{"prompt": "half a bo'
        ).encode()
    )
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.close()
    await writer.wait_closed()
    rows = await client.app[SERVICES].store._all("SELECT status, outcome, cost_nanos FROM ledger")
    for _ in range(100):
        if rows:
            break
        await asyncio.sleep(0.02)
        rows = await client.app[SERVICES].store._all(
            "SELECT status, outcome, cost_nanos FROM ledger"
        )
    assert rows == [(499, "client_gone", 0)]
