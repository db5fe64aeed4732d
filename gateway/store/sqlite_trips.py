"""Trips to SQLite's thread, shared: statements that concurrent requests send while a trip is
under way go together in the next one (group execution, as a database groups commits).

aiosqlite runs every statement on the connection's own thread; each trip costs a wake-up of that
thread and one of the event loop, more CPU than a small statement itself. Alone, a statement
makes its trip at once (no added wait); under load, the statements that queued up during a trip
make the next trip together, however many there are.

What holds: each statement still runs alone in autocommit, atomically, in the order sent, and
gets its own rows or its own exception; a batch's failure never changes another statement's
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


def _run(conn: sqlite3.Connection, statements: Sequence[Statement]) -> list[Any]:
    """On the connection's thread: each statement's rows, or the exception it raised."""
    results: list[Any] = []
    for sql, params in statements:
        try:
            results.append(conn.execute(sql, params).fetchall())
        except Exception as exc:  # the statement's own outcome, handed to its sender
            results.append(exc)
    return results


class SharedTrips:
    """The statements of one aiosqlite connection, sent in shared trips."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._busy = False  # a trip is under way
        self._queued: list[tuple[Statement, asyncio.Future[list[Any]]]] = []
        self._drain: asyncio.Task[None] | None = None

    async def run(self, sql: str, params: Params = ()) -> list[Any]:
        """The rows of `sql`, run in the next trip."""
        (rows,) = await self.run_all([(sql, params)])
        return rows

    async def run_all(self, statements: Sequence[Statement]) -> list[list[Any]]:
        """Each statement's rows, the statements run one after the other in one trip; the
        first exception among them is raised (after all have run)."""
        if self._busy:
            loop = asyncio.get_running_loop()
            waiting = [(statement, loop.create_future()) for statement in statements]
            self._queued += waiting
            results = []
            for _, future in waiting:
                try:
                    results.append(await future)
                except Exception as exc:
                    results.append(exc)
        else:
            self._busy = True
            try:
                results = await self._trip(statements)
            finally:
                self._next()
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results

    async def _trip(self, statements: Sequence[Statement]) -> list[Any]:
        conn = self._db._conn  # aiosqlite's own connection, used on its own thread only
        return list(await self._db._execute(_run, conn, list(statements)))  # type: ignore[no-untyped-call]

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
                    results = await self._trip([statement for statement, _ in batch])
                except BaseException as exc:  # the trip itself failed (or was cancelled)
                    results = [exc] * len(batch)
                    if isinstance(exc, asyncio.CancelledError):
                        self._settle(batch, results)
                        raise
                self._settle(batch, results)
        finally:
            self._busy = False
            self._drain = None

    @staticmethod
    def _settle(
        batch: list[tuple[Statement, asyncio.Future[list[Any]]]], results: list[Any]
    ) -> None:
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # its sender was cancelled
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
