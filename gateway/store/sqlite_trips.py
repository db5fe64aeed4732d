"""Trips to SQLite's thread, shared: what concurrent requests send while a trip is under way
goes together in the next one (group execution, as a database groups commits).

aiosqlite runs every statement on the connection's own thread; each trip costs a wake-up of that
thread and one of the event loop, more CPU than a small statement itself. Alone, a sender's
statements make their trip at once (no added wait); under load, whatever queued up during a trip
makes the next trip together, however much there is.

What holds: each statement still runs alone in autocommit, atomically, in the order sent, and
its sender gets its own rows or its own exception; one sender's failure never changes another's
outcome. One trip is under way at a time (the connection has one thread anyway).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite

Params = tuple[Any, ...] | dict[str, Any]
Statement = tuple[str, Params]
# A sender's statements, and whether to stop at the first that returns rows (a lookup, then
# what to do only when it found nothing).
Job = tuple[Sequence[Statement], bool]
# Per statement: its rows, the exception it raised, or None when it did not run.
Results = list[Any]


def _run(conn: sqlite3.Connection, jobs: Sequence[Job]) -> list[Results]:
    """On the connection's thread: each job's results, in order."""
    done: list[Results] = []
    for statements, until_rows in jobs:
        results: Results = []
        for sql, params in statements:
            if until_rows and results and results[-1]:
                results.append(None)  # an earlier statement found rows: not run
                continue
            try:
                results.append(conn.execute(sql, params).fetchall())
            except Exception as exc:  # the statement's own outcome, handed to its sender
                results.append(exc)
        done.append(results)
    return done


class SharedTrips:
    """The statements of one aiosqlite connection, sent in shared trips."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._busy = False  # a trip is under way
        self._queued: list[tuple[Job, asyncio.Future[Results]]] = []
        self._drain: asyncio.Task[None] | None = None

    async def run(self, sql: str, params: Params = ()) -> list[Any]:
        """The rows of `sql`, run in the next trip."""
        (rows,) = await self.run_all([(sql, params)])
        return rows  # type: ignore[no-any-return]

    async def run_all(
        self, statements: Sequence[Statement], *, until_rows: bool = False
    ) -> Results:
        """Each statement's rows, the statements run one after the other in one trip (with
        `until_rows`, those after the first that returns rows are not run: None). The first
        exception among them is raised (after all have run)."""
        job: Job = (statements, until_rows)
        if self._busy:
            future: asyncio.Future[Results] = asyncio.get_running_loop().create_future()
            self._queued.append((job, future))
            results = await future
        else:
            self._busy = True
            try:
                (results,) = await self._trip([job])
            finally:
                self._next()
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results

    async def _trip(self, jobs: list[Job]) -> list[Results]:
        conn = self._db._conn  # aiosqlite's own connection, used on its own thread only
        return list(await self._db._execute(_run, conn, jobs))  # type: ignore[no-untyped-call]

    def _next(self) -> None:
        """After a trip: what queued meanwhile goes in a trip of its own, from a task (the
        request whose trip ended does not wait for it)."""
        if not self._queued:
            self._busy = False
            return
        self._drain = asyncio.get_running_loop().create_task(self._drain_queued())

    async def _drain_queued(self) -> None:
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                try:
                    done = await self._trip([job for job, _ in batch])
                except asyncio.CancelledError:
                    for _, future in batch:
                        future.cancel()
                    raise
                except Exception as exc:  # the trip itself failed
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), results in zip(batch, done, strict=True):
                    if not future.done():  # else its sender was cancelled
                        future.set_result(results)
        finally:
            self._busy = False
            self._drain = None
