"""One Redis client per process, shared by the rate limiter, coalescing across replicas and the
change broadcasts, with every call bounded and a circuit breaker.

What holds:
- A Redis that answers nothing (hung, SIGSTOP) costs a call `timeout_s` (GATEWAY_REDIS_TIMEOUT_S,
  0.25 s): the read timeout. Making a connection and waiting for a pooled one may take up to
  `CONNECT_S` more each (a loaded machine is slow to connect; a refused connection fails at
  once), and no call outlives `hard_limit_s` whatever happens.
- After `FAILURES_TO_OPEN` failed calls in a row the breaker opens: every caller goes on without
  Redis at once (no call is tried), while one background probe pings Redis every `PROBE_S`; its
  first answer closes the breaker. A failed call alone (a slow moment) only makes its own caller
  go on without Redis. `up` and `problem` (the `gateway_redis_up` gauge, `/readyz`'s
  `degraded`) are always current, whether or not requests come.
- Blocking reads (a follower waiting on another replica's stream, the change listener) use
  connections of their own, so they never hold the shared pool nor trip the breaker by waiting.
- A process never opens more than `max_connections` (GATEWAY_REDIS_MAX_CONNECTIONS) to Redis:
  one for the change listener, a quarter of the rest for followers' blocking reads, the others
  for calls. Past its pool's size a caller waits for a connection rather than opening one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)
PROBE_S = 1.0
MAX_CONNECTIONS = 64  # GATEWAY_REDIS_MAX_CONNECTIONS' default
FEWEST_CONNECTIONS = 4  # a call, two blocking readers and the listener
CONNECT_S = 1.0
FAILURES_TO_OPEN = 2
T = TypeVar("T")
FAILURES = (RedisError, OSError, TimeoutError)


class RedisUnavailable(Exception):
    """Redis is not to be used now (the breaker is open, or this call failed)."""


def _ignore(up: bool) -> None:
    pass


def split_connections(most: int) -> tuple[int, int]:
    """(calls, blocking readers) out of `most` connections, one kept for the listener."""
    most = max(most, FEWEST_CONNECTIONS)
    readers = max(2, (most - 1) // 4)
    return most - 1 - readers, readers


class RedisLink:
    def __init__(
        self,
        url: str,
        timeout_s: float,
        on_state: Callable[[bool], None] = _ignore,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.on_state = on_state
        calls, self.reader_connections = split_connections(max_connections)
        connect_s = max(CONNECT_S, timeout_s)
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=calls,
            timeout=connect_s,  # waiting for a pooled connection
            socket_connect_timeout=connect_s,
            socket_timeout=timeout_s,
            retry_on_timeout=False,
        )
        self.redis: Any = aioredis.Redis(connection_pool=pool)
        self.hard_limit_s = timeout_s + 2 * connect_s
        self.problem: str | None = None
        self._failures = 0  # failed calls in a row
        self._probe: asyncio.Task[None] | None = None
        on_state(True)

    @property
    def up(self) -> bool:
        return self.problem is None

    def blocking_client(self, read_timeout_s: float | None, connections: int = 1) -> Any:
        """A client of its own for reads that block on purpose (they wait longer than calls),
        with at most `connections`: a reader past them waits for one (as long as a read may
        block) rather than opening another."""
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=connections,
            timeout=None if read_timeout_s is None else read_timeout_s + CONNECT_S,
            socket_connect_timeout=max(CONNECT_S, self.timeout_s),
            socket_timeout=read_timeout_s,
        )
        return aioredis.Redis(connection_pool=pool)

    async def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """`await make()` within the timeout; RedisUnavailable at once while the breaker is
        open, or when this call fails (which opens it)."""
        if self.problem is not None:
            raise RedisUnavailable(self.problem)
        try:
            result = await asyncio.wait_for(make(), self.hard_limit_s)
        except FAILURES as exc:
            self._failures += 1
            if self._failures >= FAILURES_TO_OPEN:
                self.failed(exc)
            raise RedisUnavailable(_kind(exc)) from exc
        self._failures = 0
        return result

    def failed(self, exc: BaseException) -> None:
        """Open the breaker; the probe closes it when Redis answers again."""
        if self.problem is None:
            log.warning("redis does not answer (%s): going on without it until it does", _kind(exc))
            self.on_state(False)
        self.problem = f"redis unreachable ({_kind(exc)})"
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._probe_until_up())

    async def _probe_until_up(self) -> None:
        while self.problem is not None:
            await asyncio.sleep(PROBE_S)
            try:
                await asyncio.wait_for(self.redis.ping(), self.timeout_s)
            except FAILURES as exc:
                self.problem = f"redis unreachable ({_kind(exc)})"
                continue
            log.warning("redis answers again: shared again")
            self.problem = None
            self._failures = 0
            self.on_state(True)

    async def check(self) -> None:
        """At start: raise RedisUnavailable unless Redis answers (within a few timeouts)."""
        try:
            await asyncio.wait_for(self.redis.ping(), max(self.timeout_s * 4, 2.0))
        except FAILURES as exc:
            raise RedisUnavailable(_kind(exc)) from exc

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        await self.redis.aclose()


def _kind(exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:120] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
