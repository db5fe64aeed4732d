"""Shared trips to SQLite's thread, on a real aiosqlite connection: concurrent statements share
trips, in the order sent, each with its own rows or its own error; alone, a statement makes its
trip at once."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import aiosqlite
import pytest

from gateway.store.sqlite_trips import SharedTrips


@pytest.fixture
async def db() -> AsyncIterator[aiosqlite.Connection]:
    connection = await aiosqlite.connect(":memory:", isolation_level=None)
    await connection.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    yield connection
    await connection.close()


def counting(trips: SharedTrips) -> list[int]:
    """The number of senders' jobs in each trip, as the trips are made."""
    sizes: list[int] = []
    real = trips._trip

    async def trip(jobs: Any) -> Any:
        sizes.append(len(jobs))
        return await real(jobs)

    trips._trip = trip  # type: ignore[method-assign]
    return sizes


async def test_concurrent_statements_share_trips_in_order(db: aiosqlite.Connection) -> None:
    trips = SharedTrips(db)
    sizes = counting(trips)
    inserted = await asyncio.gather(
        *(trips.run("INSERT INTO t (n) VALUES (?) RETURNING n", (n,)) for n in range(50))
    )
    assert inserted == [[(n,)] for n in range(50)]
    assert sum(sizes) == 50 and len(sizes) < 10  # the first alone, the rest together
    assert await trips.run("SELECT count(*) FROM t") == [(50,)]


async def test_each_statement_gets_its_own_error(db: aiosqlite.Connection) -> None:
    trips = SharedTrips(db)
    await trips.run("INSERT INTO t (n) VALUES (1)")
    outcomes = await asyncio.gather(
        trips.run("SELECT 1"),  # makes the trip the others wait for
        trips.run("INSERT INTO t (n) VALUES (1)"),  # a duplicate: fails alone
        trips.run("INSERT INTO t (n) VALUES (2) RETURNING n"),
        return_exceptions=True,
    )
    assert outcomes[0] == [(1,)]
    assert isinstance(outcomes[1], sqlite3.IntegrityError)
    assert outcomes[2] == [(2,)]


async def test_statements_sent_together_make_one_trip(db: aiosqlite.Connection) -> None:
    trips = SharedTrips(db)
    sizes = counting(trips)
    rows = await trips.run_all([("INSERT INTO t (n) VALUES (7)", ()), ("SELECT n FROM t", ())])
    assert rows == [[], [(7,)]] and sizes == [1]
    with pytest.raises(sqlite3.IntegrityError):  # the first error, once all have run
        await trips.run_all(
            [("INSERT INTO t (n) VALUES (7)", ()), ("INSERT INTO t VALUES (8)", ())]
        )
    assert await trips.run("SELECT n FROM t ORDER BY n") == [(7,), (8,)]


async def test_a_cancelled_sender_leaves_the_others_served(db: aiosqlite.Connection) -> None:
    trips = SharedTrips(db)
    first = asyncio.ensure_future(trips.run("SELECT 1"))
    await asyncio.sleep(0)
    left = asyncio.ensure_future(trips.run("INSERT INTO t (n) VALUES (3)"))
    kept = asyncio.ensure_future(trips.run("INSERT INTO t (n) VALUES (4) RETURNING n"))
    await asyncio.sleep(0)
    left.cancel()
    assert await first == [(1,)] and await kept == [(4,)]
    assert await trips.run("SELECT count(*) FROM t WHERE n = 4") == [(1,)]


async def test_a_lookup_and_what_follows_a_miss_in_one_trip(db: aiosqlite.Connection) -> None:
    """With until_rows, what follows the first statement that returns rows is not run."""
    trips = SharedTrips(db)
    sizes = counting(trips)
    find = ("SELECT n FROM t WHERE n = 5", ())
    make = ("INSERT INTO t (n) VALUES (5) RETURNING n", ())
    assert await trips.run_all([find, make], until_rows=True) == [[], [(5,)]]  # a miss: made
    assert await trips.run_all([find, make], until_rows=True) == [[(5,)], None]  # found: not
    assert sizes == [1, 1]  # one trip each (one job of two statements)
