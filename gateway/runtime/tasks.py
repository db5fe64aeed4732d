"""The one owner of work that outlives what started it: upstream calls whose client left, cache
stores, housekeeping, listeners. Every such task is started here, with a name, and the app's
lifecycle waits for them (then cancels what is left) before it closes what they use.

What holds: a task's exception is always retrieved and logged (whoever would have seen it may be
gone), and `close()` returns only when every task has ended.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class Tasks:
    """The background tasks of one app."""

    def __init__(self) -> None:
        self._running: set[asyncio.Task[Any]] = set()
        self._lasting: set[asyncio.Task[Any]] = set()

    def spawn(
        self, name: str, work: Coroutine[Any, Any, T], *, lasting: bool = False
    ) -> asyncio.Task[T]:
        """Run `work` in a task of its own named `name`, kept until it ends. A `lasting` task
        (housekeeping) runs for the app's life: it is cancelled, not waited for."""
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._running.add(task)
        if lasting:
            self._lasting.add(task)
        task.add_done_callback(self._ended)
        return task

    def pending(self) -> list[asyncio.Task[Any]]:
        """The tasks that end by themselves (all but the lasting ones) still running."""
        return [task for task in self._running if task not in self._lasting]

    async def settle(self) -> None:
        """Wait until every task that ends by itself has ended (those started meanwhile too)."""
        while pending := self.pending():
            await asyncio.wait(pending)

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        self._lasting.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("background task %s failed", task.get_name(), exc_info=error)

    async def close(self, grace_s: float) -> None:
        """Wait up to `grace_s` for every task (those started meanwhile too), then cancel
        what is still running and wait for it to end."""
        for task in self._lasting:
            task.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while self._running:
            pending = set(self._running)
            left = max(0.0, deadline - loop.time())
            log.info("waiting up to %gs for %d background tasks", left, len(pending))
            _, late = await asyncio.wait(pending, timeout=left)
            if late:
                for task in late:
                    task.cancel()
                await asyncio.wait(late)
