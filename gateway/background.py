"""Work that outlives the request that started it (upstream calls whose client left, cache
stores). The app keeps every such task in DETACHED and waits for them before it closes."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from aiohttp import web

from gateway.state import DETACHED

T = TypeVar("T")


def spawn(app: web.Application, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Run `work` in a task of its own, tracked until it ends; its exception, if any, is
    retrieved (whoever would have seen it may be gone)."""
    detached = app[DETACHED]
    task = asyncio.create_task(work)
    detached.add(task)

    def done(task: asyncio.Task[T]) -> None:
        detached.discard(task)
        if not task.cancelled():
            task.exception()

    task.add_done_callback(done)
    return task
