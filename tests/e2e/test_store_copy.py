"""`gateway db copy`, the way an operator moves up: traffic through the SDK on the embedded
SQLite store, the CLI copies it into a real PostgreSQL, and a gateway on PostgreSQL then knows
every key, every cent and every cached answer the first one did."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from gateway.admin import accounts
from gateway.app import create_app
from gateway.runtime.state import SERVICES
from gateway.settings import Settings
from gateway.store.base import UsageFilter
from gateway.store.copy import copy_store
from tests.conftest import ADMIN_TOKEN, FakeUpstream
from tests.e2e.test_cache import stored
from tests.postgres_server import PostgresServer

# Starts the servers it tests itself (or needs no fixture's database): run once, not again on
# PostgreSQL.
pytestmark = pytest.mark.one_pass

REQUEST: dict[str, Any] = {"model": "gpt-image-1", "prompt": "a kingfisher", "quality": "low"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


async def test_moving_up_from_sqlite_to_postgres_keeps_keys_money_and_the_cache(
    aiohttp_client: Any,
    fake_upstream: FakeUpstream,
    make_settings: Callable[..., Settings],
    postgres_server: PostgresServer,
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    sqlite_url = f"sqlite:///{data_dir / 'gateway.db'}"
    before = await aiohttp_client(
        create_app(
            make_settings(upstream_url=fake_upstream.url, database_url=sqlite_url,
                          cache_enabled=True)
        )
    )  # fmt: skip
    store = before.app[SERVICES].store
    team = await accounts.create_team(store, accounts.TeamCreate(name="t", budget_usd="0.05"))
    secret = (await accounts.create_key(store, accounts.KeyCreate(team="t"))).secret
    sdk = openai.AsyncOpenAI(
        base_url=str(before.make_url("/v1")), api_key=secret, max_retries=0, timeout=20
    )
    for prompt in ("a kingfisher", "a wren", "a kingfisher"):  # a miss, a miss, a hit
        await sdk.images.generate(**{**REQUEST, "prompt": prompt})
    with pytest.raises(openai.RateLimitError):  # past the budget: a refusal row
        await sdk.images.generate(**{**REQUEST, "quality": "high", "n": 4})
    await stored(before)
    team_before = await (await before.get("/admin/teams/t", headers=ADMIN)).json()
    usage_before = await store.usage(UsageFilter(), "model")
    await sdk.close()
    await before.close()  # the operator stops the gateway first

    target = await postgres_server.new_database()
    copied = await asyncio.to_thread(cli, data_dir, "db", "copy", "--to", target)
    assert copied.returncode == 0, copied.stderr
    assert "ledger cost_nanos" in copied.stdout and "@" in copied.stdout
    again = await asyncio.to_thread(cli, data_dir, "db", "copy", "--to", target)
    assert again.returncode == 1 and "not empty" in again.stderr and "--overwrite" in again.stderr

    after = await aiohttp_client(
        create_app(
            make_settings(upstream_url=fake_upstream.url, database_url=target, cache_enabled=True)
        )
    )
    assert (await (await after.get("/admin/teams/t", headers=ADMIN)).json()) == team_before
    assert await after.app[SERVICES].store.usage(UsageFilter(), "model") == usage_before
    sdk = openai.AsyncOpenAI(
        base_url=str(after.make_url("/v1")), api_key=secret, max_retries=0, timeout=20
    )
    raw = await sdk.images.with_raw_response.generate(**{**REQUEST, "prompt": "a wren"})
    assert raw.headers["x-gateway-cache"] == "hit"  # the copied index, the same key hash
    assert len(fake_upstream.requests) == 2
    new_team = await accounts.create_team(
        after.app[SERVICES].store, accounts.TeamCreate(name="after")
    )
    assert new_team.id > team.id  # ids go on after the copied ones
    await sdk.close()


async def test_a_copy_back_to_sqlite_checks_out(
    aiohttp_client: Any,
    fake_upstream: FakeUpstream,
    make_settings: Callable[..., Settings],
    postgres_server: PostgresServer,
    tmp_path: Path,
) -> None:
    source = await postgres_server.new_database()
    gateway = await aiohttp_client(
        create_app(make_settings(upstream_url=fake_upstream.url, database_url=source))
    )
    store = gateway.app[SERVICES].store
    await accounts.create_team(store, accounts.TeamCreate(name="t", budget_usd="5"))
    secret = (await accounts.create_key(store, accounts.KeyCreate(team="t"))).secret
    sdk = openai.AsyncOpenAI(
        base_url=str(gateway.make_url("/v1")), api_key=secret, max_retries=0, timeout=20
    )
    await asyncio.gather(*(sdk.images.generate(**REQUEST) for _ in range(3)))
    await stored(gateway)
    await sdk.close()
    report = await copy_store(source, f"sqlite:///{tmp_path / 'back.db'}")
    assert report.totals["ledger"] == 3 and report.totals["ledger cost_nanos"] > 0
    assert report.totals["spend spent_nanos"] == 8 * report.totals["ledger cost_nanos"]
