"""Cache stores, batched off the request path.

A miss hands its body over (`submit`) and goes on. A background task takes what is queued every
`BATCH_DELAY_S` (sooner once `MAX_BATCH` wait), writes and names every body of the batch in one
worker-thread call, and indexes every entry in one store statement. Measured at one request at a
time, a store done on its own cost more CPU than all the rest of the request, most of it in
thread hand-offs; batched, a handful of hand-offs serve dozens of stores.

What holds: every submitted store ends, stored or not, and its `done` callback hears which;
naming bodies and indexing them happen under the cache's lock (a sweep never removes a body an
entry is about to name); `close()` stores what is queued. A store lost with its process is only a
later miss: nothing is served that was not stored whole and verified.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.cache.files import Written
from gateway.store.base import CacheEntry

log = logging.getLogger(__name__)
BATCH_DELAY_S = 0.05
MAX_BATCH = 64


@dataclass(frozen=True, slots=True)
class PendingStore:
    """A body to store: its bytes, or a temporary file already written (a stream's tee, a
    spooled body); `entry` makes its index entry once the body has its name; `done` hears the
    entry stored, or None."""

    body: bytes | Written
    entry: Callable[[Written], CacheEntry]
    done: Callable[[CacheEntry | None], None]

    @property
    def size(self) -> int:
        return len(self.body) if isinstance(self.body, bytes) else self.body.size


class BatchStore:
    def __init__(self, store_batch: Callable[[list[PendingStore]], Awaitable[None]]) -> None:
        """`store_batch` stores a batch (the cache's `_store_batch`); it must call every
        pending store's `done`."""
        self._store_batch = store_batch
        self._queue: list[PendingStore] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Held while a batch is being stored, by the background task or by a drain (housekeeping
        # drains too): `idle` is False and another drain waits until the batch is in.
        self._flushing = asyncio.Lock()

    def submit(self, pending: PendingStore) -> None:
        self._queue.append(pending)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        if len(self._queue) >= MAX_BATCH:
            self._wake.set()

    async def _run(self) -> None:
        """Store batches while there is something queued; then end (a new submit restarts)."""
        while self._queue:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), BATCH_DELAY_S)
            self._wake.clear()
            await self._flush()

    async def _flush(self) -> None:
        async with self._flushing:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                try:
                    await self._store_batch(batch)
                except Exception:
                    log.exception("could not store %d responses in the cache", len(batch))
                    for pending in batch:
                        pending.done(None)

    @property
    def idle(self) -> bool:
        """Nothing queued, and no batch being stored (by the task or by a drain)."""
        return (
            not self._queue
            and not self._flushing.locked()
            and (self._task is None or self._task.done())
        )

    async def drain(self) -> None:
        """Store what is queued now, and wait for a batch in progress."""
        if self._task is not None:
            self._wake.set()
            await self._task
        await self._flush()
