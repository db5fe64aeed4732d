"""Running a page's store reads side by side, a few at a time.

On PostgreSQL each read takes a connection of the process's pool, so reads side by side make a
page as slow as its slowest read rather than their sum; at most `AT_ONCE` of them, so the pool
(10 connections) keeps room for the requests the gateway is serving. On SQLite they queue on its
one connection, as they would one after another.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import TypeVar

T = TypeVar("T")
AT_ONCE = 4


async def side_by_side(reads: Iterable[Awaitable[T]]) -> list[T]:
    """The results of `reads`, in their order, with at most AT_ONCE running at a time."""
    gate = asyncio.Semaphore(AT_ONCE)

    async def one(read: Awaitable[T]) -> T:
        async with gate:
            return await read

    return list(await asyncio.gather(*(one(read) for read in reads)))
