"""`/healthz` and `/readyz`: liveness of the process, readiness of the store and upstream."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.runtime.state import LIFECYCLE
from gateway.settings import Settings
from tests.conftest import UPSTREAM_KEY, FakeUpstream

# Starts the servers it tests itself (or needs no fixture's database): run once, not again on
# PostgreSQL.
pytestmark = pytest.mark.one_pass


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_healthz_and_readyz_when_all_is_well(
    gateway: Any, fake_upstream: FakeUpstream
) -> None:
    assert (await (await gateway.get("/healthz")).json()) == {"status": "ok"}
    ready = await gateway.get("/readyz")
    assert ready.status == 200
    assert await ready.json() == {
        "status": "ready",
        "store": "ok",
        "ledger": "ok",
        "upstream": "ok",
    }
    # The probe reached upstream with the gateway's own key.
    probe = fake_upstream.requests[-1]
    assert probe.path == "/v1/models"
    headers = {name.lower(): value for name, value in probe.headers.items()}
    assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


async def test_readyz_says_when_upstream_is_unreachable_and_asks_again_later(
    aiohttp_client: Any, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(
        upstream_url=f"http://127.0.0.1:{closed_port()}/v1", readiness_cache_s=60
    )
    client: TestClient[Any, Any] = await aiohttp_client(create_app(settings))
    ready = await client.get("/readyz")
    assert ready.status == 503
    body = await ready.json()
    assert body["status"] == "unavailable" and body["store"] == "ok"
    assert "unreachable" in body["upstream"]
    assert (await client.get("/healthz")).status == 200  # alive all the same


async def test_readyz_caches_the_upstream_probe(gateway: Any, fake_upstream: FakeUpstream) -> None:
    for _ in range(5):
        assert (await gateway.get("/readyz")).status == 200
    probes = [r for r in fake_upstream.requests if r.path == "/v1/models"]
    assert len(probes) == 1


async def test_readyz_fails_once_shutdown_has_begun(gateway: Any) -> None:
    gateway.app[LIFECYCLE].stopping_at = 0.0
    ready = await gateway.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["shutdown"] == "in progress"
