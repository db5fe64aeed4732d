"""What one replica changes, the others hear at once through Redis (replicas/changes.py): a key
revoked through one is refused by the others on their next request (not after the second their
cached keys live), and a price reload on one reloads them all. Real PostgreSQL, real Redis, the
official SDK."""

from __future__ import annotations

import asyncio
import functools
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from gateway.admin import accounts
from gateway.app import create_app
from gateway.edge.auth import hash_key
from gateway.pricing import PriceBook
from gateway.runtime.server import reload_prices
from gateway.runtime.state import SERVICES
from gateway.settings import SHIPPED_PRICES, Settings
from gateway.store.key_cache import KeyCache
from tests.conftest import ADMIN_TOKEN, FakeUpstream
from tests.redis_server import RedisServer

# Starts the servers it tests itself (or needs no fixture's database): run once, not again on
# PostgreSQL.
pytestmark = pytest.mark.one_pass

REQUEST: dict[str, Any] = {"model": "gpt-image-1", "prompt": "a stork", "quality": "low"}


async def heard(check: Callable[[], bool], within_s: float = 0.5) -> float:
    """Seconds until `check()` holds; fails past `within_s`."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < within_s, "not heard in time"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def test_a_revocation_and_a_price_reload_reach_every_replica_at_once(
    aiohttp_client: Any,
    fake_upstream: FakeUpstream,
    make_settings: Callable[..., Settings],
    pg_url: str,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    prices = tmp_path / "prices.toml"
    shutil.copy(SHIPPED_PRICES, prices)
    settings = make_settings(
        upstream_url=fake_upstream.url, database_url=pg_url, redis_url=redis_server.url,
        prices=prices,
    )  # fmt: skip
    gateways = [await aiohttp_client(create_app(settings)) for _ in range(3)]
    store = gateways[0].app[SERVICES].store
    await accounts.create_team(store, accounts.TeamCreate(name="t"))
    issued = await accounts.create_key(store, accounts.KeyCreate(team="t"))
    sdks = [
        openai.AsyncOpenAI(base_url=str(g.make_url("/v1")), api_key=issued.secret, max_retries=0)
        for g in gateways
    ]
    for sdk in sdks:  # every replica keeps the key in memory now
        await sdk.images.generate(**REQUEST)
    # Long enough that only a message, not the cached key's age, can explain a refusal.
    for gateway in gateways:
        gateway.app[SERVICES].store.keys.max_age_s = 60.0
    response = await gateways[0].delete(
        f"/admin/keys/{issued.record.id}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert response.status == 200
    for gateway in gateways[1:]:
        keys = gateway.app[SERVICES].store.keys
        await heard(functools.partial(_forgot, keys, hash_key(issued.secret)))
    for sdk in sdks:
        try:
            await sdk.images.generate(**REQUEST)
            raise AssertionError("a revoked key was accepted")
        except openai.AuthenticationError:
            pass

    prices.write_text(prices.read_text().replace('version = "', 'version = "reloaded-', 1))
    reload_prices([gateways[0].app])  # what SIGHUP does on one replica
    for gateway in gateways:
        await heard(functools.partial(_reloaded, gateway.app[SERVICES].prices))
    for sdk in sdks:
        await sdk.close()


def _forgot(keys: KeyCache, key_hash: str) -> bool:
    return keys.get(key_hash) is None


def _reloaded(book: PriceBook) -> bool:
    return book.table.version.startswith("reloaded-")
