from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.store import Conflict, open_store
from gateway.store.migrations import all_migrations


async def test_migrations_apply_once_and_are_recorded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'g.db'}"
    store = open_store(url)
    await store.connect()
    try:
        first = await store.migrate()
        second = await store.migrate()
    finally:
        await store.close()
    assert first == [m.name for m in all_migrations()]
    assert second == []
    with sqlite3.connect(tmp_path / "g.db") as db:
        versions = [row[0] for row in db.execute("SELECT version FROM schema_migrations")]
    assert versions == [m.version for m in all_migrations()]


async def test_a_failing_migration_leaves_nothing_half_applied(tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_ok.sql").write_text("CREATE TABLE a (x INTEGER);")
    (migrations / "0002_bad.sql").write_text(
        "CREATE TABLE b (x INTEGER); INSERT INTO nope VALUES (1);"
    )
    from gateway.store.sqlite import SqliteStore

    store = SqliteStore(str(tmp_path / "g.db"), migrations_dir=migrations)
    await store.connect()
    try:
        with pytest.raises(Exception, match="nope"):
            await store.migrate()
        # 0001 stays applied; 0002 neither created its table nor was recorded.
        async with store.db.execute("SELECT version FROM schema_migrations") as cursor:
            assert [row[0] for row in await cursor.fetchall()] == ["0001"]
        async with store.db.execute("SELECT name FROM sqlite_master WHERE name = 'b'") as cursor:
            assert await cursor.fetchone() is None
    finally:
        await store.close()


async def test_teams_and_keys_round_trip(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'g.db'}")
    await store.connect()
    try:
        await store.migrate()
        team = await store.create_team("design", budget_nanos=5_000_000_000, budget_period="month")
        with pytest.raises(Conflict):
            await store.create_team("design")
        key = await store.create_key(
            key_id="key_1",
            team_id=team.id,
            name="ci",
            key_hash="h" * 64,
            prefix="sk-gw-abc",
            rpm=10,
        )
        assert key.team_name == "design" and key.rpm == 10 and not key.revoked
        found = await store.find_key_by_hash("h" * 64)
        assert found is not None and found[1].budget_nanos == 5_000_000_000
        assert (await store.update_team("design", rpm=7)).rpm == 7  # type: ignore[union-attr]
        revoked = await store.revoke_key("key_1")
        assert revoked is not None and revoked.revoked
        assert [k.id for k in await store.list_keys(team.id)] == ["key_1"]
        assert await store.get_team("nobody") is None
    finally:
        await store.close()


async def test_checkpoint_moves_the_wal_into_the_database(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'g.db'}")
    await store.connect()
    try:
        await store.migrate()
        for i in range(50):
            await store.create_team(f"team{i}")
        database = tmp_path / "g.db"
        before = database.stat().st_size  # automatic checkpoints are far off: pages sit in the WAL
        await store.checkpoint()
        assert database.stat().st_size > before
        assert len(await store.list_teams()) == 50
    finally:
        await store.close()
