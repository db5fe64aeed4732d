"""Issue 22: a slow or stopped PostgreSQL makes requests fail cleanly and at once, never stall
every team on every replica. A row lock held by a long transaction costs that team's requests
GATEWAY_DATABASE_TIMEOUT_S and a JSON 503, not the whole lock; a stopped server gives OpenAI-
shaped 503s (not aiohttp's plain-text 500) and a `/readyz` that answers within its timeout; a
server started again is used again without a restart. A throwaway PostgreSQL of its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import openai
import pytest

from gateway.admin import accounts
from gateway.app import create_app
from gateway.runtime.state import SERVICES
from gateway.settings import Settings
from tests.conftest import FakeUpstream
from tests.e2e.test_cache import sdk_for
from tests.postgres_server import PostgresServer

REQUEST: dict[str, Any] = {"model": "gpt-image-1.5", "prompt": "sick", "quality": "low"}


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


async def test_a_locked_team_and_a_stopped_server_fail_fast_and_recover(
    aiohttp_client: Any,
    make_settings: Callable[..., Settings],
    fake_upstream: FakeUpstream,
    own_postgres: PostgresServer,
) -> None:
    url = await own_postgres.new_database()
    settings = make_settings(upstream_url=fake_upstream.url, database_url=url, database_timeout_s=1)
    client = await aiohttp_client(create_app(settings))
    store = client.app[SERVICES].store
    secrets = {}
    for team in ("locked", "free"):
        await accounts.create_team(store, accounts.TeamCreate(name=team, budget_usd="10"))
        secrets[team] = (await accounts.create_key(store, accounts.KeyCreate(team=team))).secret
    locked, free = sdk_for(client, secrets["locked"]), sdk_for(client, secrets["free"])
    await locked.images.generate(**REQUEST)

    # Someone holds the locked team's row in a long transaction.
    holder = await asyncpg.connect(url)
    transaction = holder.transaction()
    await transaction.start()
    await holder.execute("SELECT * FROM teams WHERE name = 'locked' FOR UPDATE")
    try:
        started = time.monotonic()
        results = await asyncio.gather(
            *(locked.images.generate(**REQUEST) for _ in range(12)), return_exceptions=True
        )
        assert time.monotonic() - started < 4  # the timeout, not the lock's whole life
        assert all(isinstance(r, openai.InternalServerError) for r in results), results
        assert {r.code for r in results if isinstance(r, openai.APIStatusError)} == {
            "storage_unavailable"
        }
        started = time.monotonic()
        await free.images.generate(**REQUEST)  # other teams are not held up
        assert time.monotonic() - started < 2
    finally:
        await transaction.rollback()
        await holder.close()
    await locked.images.generate(**REQUEST)

    own_postgres.pause()
    try:
        started = time.monotonic()
        with pytest.raises(openai.InternalServerError) as down:
            await free.images.generate(**{**REQUEST, "prompt": "down"})
        assert down.value.status_code == 503 and down.value.code == "storage_unavailable"
        ready = await client.get("/readyz")
        assert ready.status == 503 and (await ready.json())["store"].startswith("failed")
        admin = await client.get(
            "/admin/teams", headers={"Authorization": "Bearer admin-test-token"}
        )
        assert (
            admin.status == 503 and (await admin.json())["error"]["code"] == "storage_unavailable"
        )
        assert time.monotonic() - started < 6
        sent = [r.json["prompt"] for r in fake_upstream.requests if r.method == "POST"]
        assert "down" not in sent  # nothing went upstream
    finally:
        own_postgres.resume()
    for _ in range(50):  # the pool reconnects by itself
        if (await client.get("/readyz")).status == 200:
            break
        await asyncio.sleep(0.2)
    await free.images.generate(**REQUEST)
    for sdk in (locked, free):
        await sdk.close()
