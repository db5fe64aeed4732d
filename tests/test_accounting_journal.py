"""journal: rows appended while others replay are each written into the store exactly once."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.accounting.journal import LedgerJournal, dead_local_owners, this_process
from gateway.store import Store, open_store
from tests.test_store_accounting import row, setup_budget


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'gateway.db'}")
    await opened.connect()
    await opened.migrate()
    await setup_budget(opened, team_budget=None, key_budget=None)
    yield opened
    await opened.close()


async def test_appends_racing_two_replayers_lose_and_double_nothing(
    store: Store, tmp_path: Path
) -> None:
    directory = tmp_path / "journal"
    rows = [dataclasses.replace(row(None, 10), request_id=f"req_j{i}") for i in range(300)]

    def append_all() -> None:  # another worker journaling rows as they fail
        writer = LedgerJournal(directory)
        for one in rows:
            writer._append((json.dumps(dataclasses.asdict(one)) + "\n").encode())
            time.sleep(0.001)

    appender = threading.Thread(target=append_all)
    appender.start()
    first, second = LedgerJournal(directory), LedgerJournal(directory)
    rounds = 0
    while appender.is_alive():
        await asyncio.gather(first.replay(store), second.replay(store))
        rounds += 1
    appender.join()
    assert rounds > 10  # the replays did race the appends
    await first.replay(store)
    ledger = await store._all("SELECT request_id, cost_nanos FROM ledger")  # type: ignore[attr-defined]
    assert sorted(r[0] for r in ledger) == sorted(r.request_id for r in rows)
    assert await first.pending() == 0
    spent = await store._all("SELECT spent_nanos FROM spend WHERE period = 'total' LIMIT 1")  # type: ignore[attr-defined]
    assert spent[0][0] == 300 * 10  # each row counted once


def test_only_dead_local_owners_are_orphaned() -> None:
    alive = this_process()
    host, pid, start = alive.split(":")
    assert pid == str(os.getpid()) and len(start) == 6
    owners = [alive, f"{host}:999999999:abc", f"{host}:999999998", "elsewhere:1:abc", f"{host}:x"]
    # A dead pid in either form (older versions wrote `host:pid`); never another host's.
    assert dead_local_owners(owners) == [f"{host}:999999999:abc", f"{host}:999999998"]
