"""The one Redis link: every call bounded, a breaker that opens after failures in a row and
closes by itself when its probe finds Redis again; against a real redis-server, hung with
SIGSTOP."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from gateway.replicas.redis_link import (
    FAILURES_TO_OPEN,
    PROBE_S,
    RedisLink,
    RedisUnavailable,
    split_connections,
)
from tests.redis_server import RedisServer

# Starts the servers it tests itself (or needs no fixture's database): run once, not again on
# PostgreSQL.
pytestmark = pytest.mark.one_pass


@pytest.fixture
def hang(redis_server: RedisServer) -> Iterator[RedisServer]:
    """The server, to be hung with `os.kill(pid, SIGSTOP)`; woken again before it is stopped."""
    yield redis_server
    assert redis_server.process is not None
    redis_server.process.send_signal(signal.SIGCONT)


async def test_a_hung_redis_costs_two_calls_their_timeout_and_the_rest_nothing(
    hang: RedisServer,
) -> None:
    states: list[bool] = []
    link = RedisLink(hang.url, timeout_s=0.25, on_state=states.append)
    try:
        assert await link.call(lambda: link.redis.set("k", "v")) is True
        assert hang.process is not None
        hang.process.send_signal(signal.SIGSTOP)

        for _ in range(FAILURES_TO_OPEN):  # each pays the read timeout, not seconds
            started = time.monotonic()
            with pytest.raises(RedisUnavailable):
                await link.call(lambda: link.redis.get("k"))
            assert time.monotonic() - started < 0.6
        assert not link.up and "redis unreachable" in (link.problem or "")

        started = time.monotonic()
        for _ in range(100):  # the breaker is open: no call is even tried
            with pytest.raises(RedisUnavailable):
                await link.call(lambda: link.redis.get("k"))
        assert time.monotonic() - started < 0.05

        hang.process.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + PROBE_S * 4
        while not link.up and time.monotonic() < deadline:  # noqa: ASYNC110 - the probe's doing
            await asyncio.sleep(0.05)
        assert link.up  # closed by the probe, with no call needed
        assert await link.call(lambda: link.redis.get("k")) == b"v"
        assert states == [True, False, True]  # the gauge heard each change once
    finally:
        await link.close()


async def test_a_redis_that_refuses_connections_fails_the_start_check(
    redis_server: RedisServer,
) -> None:
    url = redis_server.url
    redis_server.stop()
    link = RedisLink(url, timeout_s=0.25)
    try:
        started = time.monotonic()
        with pytest.raises(RedisUnavailable):
            await link.check()
        assert time.monotonic() - started < 3
    finally:
        await link.close()


async def test_connections_stay_within_the_setting_however_many_wait(
    redis_server: RedisServer,
) -> None:
    """40 calls and 20 blocking reads at once: each pool keeps to its share of
    max_connections, and the waiting ones are served in turn."""
    calls, readers = split_connections(8)
    assert (calls, readers) == (5, 2)
    link = RedisLink(redis_server.url, timeout_s=2.0, max_connections=8)
    reader = link.blocking_client(read_timeout_s=3.0, connections=link.reader_connections)
    admin = aioredis.Redis.from_url(redis_server.url)
    try:
        waited = await asyncio.gather(
            *(link.call(lambda: link.redis.blpop(["nothing"], timeout=0.1)) for _ in range(40)),
            *(reader.xread({"nothing": "$"}, block=100) for _ in range(20)),
        )
        assert waited == [None] * 40 + [[]] * 20
        connected = len(await admin.client_list()) - 1  # idle pooled ones stay: the peak
        assert 2 <= connected <= calls + readers
    finally:
        await admin.aclose()
        await reader.aclose()
        await link.close()
