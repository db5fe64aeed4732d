"""Authentication from memory (gateway/store/key_cache.py): a key found once is found again
without the database, and any change to a key or team, made by this process or another on the
same database, is seen by every process at once."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from gateway.edge import auth
from gateway.settings import Settings
from gateway.store import open_store
from gateway.store.key_cache import Generation
from gateway.store.sqlite import SqliteStore
from tests.conftest import FakeUpstream
from tests.e2e.test_cli import gateway as run_cli

HASH = "h" * 64


def test_a_generation_is_shared_by_everyone_who_maps_its_file(tmp_path: Path) -> None:
    one, two = Generation(tmp_path / "g"), Generation(tmp_path / "g")
    try:
        before = two.value()
        one.bump()
        assert two.value() == before + 1
        two.bump()
        assert one.value() == before + 2
    finally:
        one.close()
        two.close()


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, SqliteStore]]:
    """Two stores on one database file, as two worker processes have."""
    path = tmp_path / "g.db"
    first, second = open_store(f"sqlite:///{path}"), open_store(f"sqlite:///{path}")
    assert isinstance(first, SqliteStore) and isinstance(second, SqliteStore)
    await first.connect()
    await first.migrate()
    await second.connect()
    team = await first.create_team("design", rpm=10)
    await first.create_key(
        key_id="key_1", team_id=team.id, name=None, key_hash=HASH, prefix="sk-gw-abc"
    )
    yield first, second
    await first.close()
    await second.close()


async def test_a_found_key_is_found_again_from_memory(
    stores: tuple[SqliteStore, SqliteStore], tmp_path: Path
) -> None:
    store, _ = stores
    assert await store.find_key_by_hash(HASH) is not None
    # Changed behind the gateway's back (no generation moves): memory still answers ...
    with sqlite3.connect(tmp_path / "g.db") as db:
        db.execute("UPDATE api_keys SET name = 'by hand'")
    found = await store.find_key_by_hash(HASH)
    assert found is not None and found[0].name is None
    # ... until the answer ages out.
    store._keys.max_age_s = 0.0
    found = await store.find_key_by_hash(HASH)
    assert found is not None and found[0].name == "by hand"


@pytest.mark.parametrize(
    ("change", "seen"),
    [
        (lambda s: s.revoke_key("key_1"), lambda f: f is not None and f[0].revoked),
        (lambda s: s.update_key("key_1", rpm=3), lambda f: f is not None and f[0].rpm == 3),
        (lambda s: s.update_team("design", rpm=4), lambda f: f is not None and f[1].rpm == 4),
        (lambda s: s.delete_team("design"), lambda f: f is not None and f[0].revoked),
        (
            lambda s: s.rotate_key("key_1", key_hash="n" * 64, prefix="sk-gw-new"),
            lambda f: f is None,
        ),
    ],
    ids=["revoke", "key-limits", "team-limits", "team-deleted", "rotate"],
)
async def test_a_change_through_another_process_is_seen_at_once(
    stores: tuple[SqliteStore, SqliteStore],
    change: Callable[[SqliteStore], Any],
    seen: Callable[[Any], bool],
) -> None:
    serving, admin = stores
    assert await serving.find_key_by_hash(HASH) is not None  # now in memory
    await change(admin)
    assert seen(await serving.find_key_by_hash(HASH))


async def test_a_key_revoked_by_the_cli_is_refused_by_the_running_gateway_at_once(
    aiohttp_client: Any,
    fake_upstream: FakeUpstream,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    from gateway.app import create_app

    settings = make_settings(upstream_url=fake_upstream.url)  # data dir: tmp_path / "data"
    gateway = await aiohttp_client(create_app(settings))
    await asyncio.to_thread(run_cli, tmp_path, "teams", "create", "design")
    created = await asyncio.to_thread(run_cli, tmp_path, "keys", "create", "--team", "design")
    secret = next(w for w in created.stdout.split() if w.startswith(auth.KEY_PREFIX))
    sdk = openai.AsyncOpenAI(
        base_url=str(gateway.make_url("/v1")), api_key=secret, max_retries=0, timeout=20
    )
    await sdk.images.generate(model="gpt-image-1", prompt="otter", quality="low")
    await sdk.images.generate(model="gpt-image-1", prompt="otter", quality="low")  # from memory
    key_id = next(w for w in created.stdout.split() if w.startswith("key_"))
    await asyncio.to_thread(run_cli, tmp_path, "keys", "revoke", key_id)
    with pytest.raises(openai.AuthenticationError, match="revoked"):
        await sdk.images.generate(model="gpt-image-1", prompt="otter", quality="low")
    await sdk.close()
