"""Changes every replica must hear at once: a key or team changed (drop the keys kept in memory),
the price table reloaded (read it again). Through Redis pub/sub when `GATEWAY_REDIS_URL` is set;
without Redis, other replicas catch up on their own (cached keys expire within a second; prices
reload on SIGHUP to each).

What holds: hearing is best effort and never blocks a request: a message lost while Redis is
away costs at most the second a cached key lives, and the listener reconnects by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.replicas.redis_link import RedisLink

log = logging.getLogger(__name__)
CHANNEL = "gateway:changes"
KEYS, PRICES = "keys", "prices"
RECONNECT_S = 1.0


class Changes:
    """No other replica to tell (no Redis): publishing does nothing."""

    async def start(self, on: dict[str, Callable[[], object]]) -> None:
        pass

    def publish(self, kind: str) -> None:
        pass

    async def close(self) -> None:
        pass


class RedisChanges(Changes):
    def __init__(self, link: RedisLink) -> None:
        self.link = link
        # The listener blocks on its subscription for as long as nothing is said: a connection
        # of its own, without the calls' timeout.
        self.redis: Any = link.blocking_client(read_timeout_s=None)
        # Messages from this process were acted on already, when they were sent.
        self.origin = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._listener: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def start(self, on: dict[str, Callable[[], object]]) -> None:
        """Listen for the other replicas' changes: `on[kind]()` runs for each one heard."""
        self._listener = asyncio.create_task(self._listen(on))

    def publish(self, kind: str) -> None:
        task = asyncio.get_running_loop().create_task(self._send(kind))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, kind: str) -> None:
        from gateway.replicas.redis_link import RedisUnavailable

        try:
            await self.link.call(lambda: self.link.redis.publish(CHANNEL, f"{self.origin} {kind}"))
        except RedisUnavailable as exc:
            log.warning("could not tell the other replicas (%s changed): %s", kind, exc)

    async def _listen(self, on: dict[str, Callable[[], object]]) -> None:
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        origin, _, kind = message["data"].decode().partition(" ")
                        if origin != self.origin and kind in on:
                            on[kind]()
            except (_redis_error(), OSError) as exc:
                log.warning("not hearing other replicas' changes (%s); retrying", exc)
                await asyncio.sleep(RECONNECT_S)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._sending:
            await asyncio.wait(self._sending, timeout=1)
        await self.redis.aclose()


def _redis_error() -> type[Exception]:
    from redis.exceptions import RedisError

    return RedisError


def changes_for(link: RedisLink | None) -> Changes:
    return Changes() if link is None else RedisChanges(link)
