"""Clients that leave mid-upload or mid-stream leave no temporary file and no task behind."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from gateway import accounts
from gateway.app import create_app
from gateway.settings import Settings
from gateway.simulator import SimulatorConfig, create_simulator_app
from gateway.state import STORE
from tests.conftest import UPSTREAM_KEY


async def settle(baseline: int, spool_dir: Path, seconds: float = 2.0) -> tuple[int, list[Path]]:
    """Wait until the loop is back to `baseline` tasks and the spool is empty (or time is up)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        tasks, files = len(asyncio.all_tasks()), list(spool_dir.glob("body-*"))
        if (tasks <= baseline and not files) or asyncio.get_running_loop().time() > deadline:
            return tasks, files
        await asyncio.sleep(0.02)


async def start_gateway(aiohttp_client: Any, settings: Settings) -> tuple[Any, str]:
    client = await aiohttp_client(create_app(settings))
    store = client.app[STORE]
    await accounts.create_team(store, accounts.TeamCreate(name="t"))
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


async def test_client_leaving_mid_stream_leaves_no_task_even_when_upstream_went_quiet(
    aiohttp_client: Any, aiohttp_server: Any, make_settings: Callable[..., Settings]
) -> None:
    upstream = await aiohttp_server(
        create_simulator_app(
            SimulatorConfig(api_key=UPSTREAM_KEY, fault="hang-stream", fault_rate=1)
        )
    )
    settings = make_settings(upstream_url=str(upstream.make_url("/v1")))
    client, key = await start_gateway(aiohttp_client, settings)
    baseline = len(asyncio.all_tasks())

    async with aiohttp.ClientSession() as session:
        response = await session.post(
            client.make_url("/v1/images/generations"),
            json={"model": "gpt-image-1", "prompt": "p", "stream": True, "partial_images": 3},
            headers={"Authorization": f"Bearer {key}"},
        )
        first = await response.content.readuntil(b"\n\n")
        assert first.startswith(b"event: image_generation.partial_image")
        response.close()  # leave mid-stream: drops the connection

    tasks, files = await settle(baseline, settings.spool_dir)
    assert tasks <= baseline
    assert files == []


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
