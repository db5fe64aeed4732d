"""Identical requests in flight on different replicas make one upstream call (through Redis).

A replica whose request is the first for a key in its own process (`InFlightRegistry`) also
claims the key in Redis (`gateway:lead:<key>` → a flight id, set only if absent). The winner leads:
its InFlight is mirrored, event by event, into a Redis stream of its own
(`gateway:flight:<flight id>`): the stream's start and headers, each chunk of it as the client
gets it, and how it ended (the whole reply, stored, cut, failed, abandoned). A whole answer (not
a stream) is written only when another replica watches the flight (most misses have no twin,
and copying every body into Redis would cost more than the rest of the request). Any other replica
with the same request feeds a local InFlight from that stream, and its requests follow it exactly
as they follow a leader in their own process: a stream follower gets every event so far at once,
then each one as it arrives.

What holds: a follower never waits on a leader that has gone. The leader keeps its claim alive
(every `HEARTBEAT_S`, for `LEAD_TTL_MS`); a follower that hears nothing for a second checks the
claim, and when it is gone without an ending, its requests go on by themselves (a stream cut
where one had started, as in one process). Redis that cannot be reached makes each replica lead
its own (coalescing per replica, as without Redis); requests never fail for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import os
import socket
import time
from typing import Any, Protocol

from redis.exceptions import RedisError

from gateway.cache.files import BodyFiles, Tee
from gateway.cache.inflight import (
    Abandoned,
    Ending,
    Failed,
    InFlight,
    InFlightRegistry,
    Reply,
    Stored,
    StreamEnd,
)
from gateway.errors import GatewayError
from gateway.outcome import Outcome
from gateway.replicas.redis_link import RedisLink, RedisUnavailable
from gateway.store import Store
from gateway.store.base import CacheEntry

log = logging.getLogger(__name__)


class LocalCache(Protocol):
    """What remote flights use of this process's cache (cache.py's ResponseCache)."""

    @property
    def files(self) -> BodyFiles: ...
    @property
    def in_flight(self) -> InFlightRegistry: ...
    @property
    def store(self) -> Store: ...


LEAD = "gateway:lead:"
FLIGHT = "gateway:flight:"
WATCH = "gateway:watch:"  # + flight id: set by the replicas following it
HEARTBEAT_S = 1.0
LEAD_TTL_MS = 4000
STREAM_TTL_S = 60
READ_BLOCK_MS = 1000
_NOTHING = object()  # no item (as None ends a mirror's queue)
# How long a whole answer's ending waits to go with the claim's release: the closing comes once
# the answer is stored, and stores are batched every BATCH_DELAY_S (0.05 s).
CLOSING_WAIT_S = 0.25
# Claims a key only while it is still this flight's (a late heartbeat or release must not touch
# the claim of the flight after it).
_IF_OURS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if ARGV[2] == '0' then return redis.call('DEL', KEYS[1]) end
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# A whole (non-stream) answer, and the news that it is stored, are written only when some
# replica watches (most misses have no twin). The claim is released only once the answer is
# in the cache (or never will be), in the same step as the last message: a replica that starts
# watching after the answer was written waits for "stored" and then reads the cache; one that
# comes after the release finds the entry committed. So a client that retries on another
# replica after it has its answer never pays twice. ARGV[3] = '1' releases the claim.
_IF_WATCHED = """
if redis.call('EXISTS', KEYS[2]) == 1 and #ARGV > 3 then
  redis.call('XADD', KEYS[1], '*', unpack(ARGV, 4))
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
if ARGV[3] == '1' and redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
return 1
"""


class RemoteFlights:
    def __init__(self, link: RedisLink, cache: LocalCache) -> None:
        self.cache = cache
        self.link = link
        self.redis: Any = link.redis  # calls: each bounded by the link's timeout
        # A follower's reads block for up to READ_BLOCK_MS by design: connections of their own.
        self.reader: Any = link.blocking_client(
            read_timeout_s=READ_BLOCK_MS / 1000 + 5, connections=link.reader_connections
        )
        self._if_ours = self.redis.register_script(_IF_OURS)
        self._if_watched = self.redis.register_script(_IF_WATCHED)
        self._origin = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._flights = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    async def join(self, key: str, inflight: InFlight) -> bool:
        """Whether this replica leads `key` (then `inflight` is mirrored for the others);
        otherwise `inflight` is fed from the replica that does, and its requests follow it."""
        flight = f"{self._origin}:{next(self._flights)}"
        claim = functools.partial(self.redis.set, LEAD + key, flight, nx=True, px=LEAD_TTL_MS)
        try:
            for _ in range(3):
                if await self.link.call(claim):
                    inflight.mirror = _Mirror(self, key, flight)
                    return True
                leader = await self.link.call(functools.partial(self.redis.get, LEAD + key))
                if leader is not None:
                    self._spawn(self._relay(key, leader.decode(), inflight))
                    return False
                # The leader finished between the two calls: claim again.
        except RedisUnavailable:
            pass  # this replica leads its own, as without Redis (the link logs the outage)
        return True

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay(self, key: str, flight: str, inflight: InFlight) -> None:
        """Feed `inflight` from the leading replica's stream until it ends (or its leader has
        gone); then new twins no longer join it."""
        stream = FLIGHT + flight
        last = "0-0"
        tee: Tee | None = None
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.incr(WATCH + flight)
                pipe.expire(WATCH + flight, STREAM_TTL_S)
                await pipe.execute()
            while inflight.outcome is None:
                replies = await self.reader.xread({stream: last}, block=READ_BLOCK_MS, count=64)
                if not replies:
                    claim = await self.reader.get(LEAD + key)
                    if claim is None or claim.decode() != flight:
                        # Gone: read what it may have written last, then end without it.
                        replies = await self.reader.xread({stream: last}, count=64)
                        if not replies:
                            break
                for _, messages in replies:
                    for message_id, fields in messages:
                        last = message_id
                        kind = fields[b"t"]
                        if kind == b"start":
                            tee = await self.cache.files.new_tee()
                            inflight.attach_tee(tee, json.loads(fields[b"headers"]))
                        elif kind == b"data" and tee is not None:
                            await tee.append(fields[b"d"])
                            inflight.notify()
                        elif kind == b"end":
                            inflight.end(await self._decode(key, fields))
        except (RedisError, OSError) as exc:
            log.warning("lost the replica leading %s: %s", key[:12], exc)
        finally:
            inflight.end(Abandoned())  # no-op when it has ended
            self.cache.in_flight.remove(inflight)
            if tee is not None:
                await tee.release()

    async def _decode(self, key: str, fields: dict[bytes, bytes]) -> Ending:
        kind = fields[b"kind"].decode()
        if kind == "reply":
            return Reply(
                int(fields[b"status"]),
                json.loads(fields[b"headers"]),
                fields[b"body"],
                int(fields[b"images"]),
                int(fields[b"cost"]),
            )
        if kind == "stream_end":
            return StreamEnd(
                Outcome(fields[b"outcome"].decode()),
                fields[b"trailer"],
                int(fields[b"images"]),
                int(fields[b"cost"]),
            )
        if kind == "failed":
            error = GatewayError(
                int(fields[b"status"]),
                fields[b"message"].decode(),
                type=fields[b"type"].decode(),
                code=fields[b"code"].decode() or None,
                headers=json.loads(fields[b"headers"]),
            )
            return Failed(error)
        if kind == "stored":
            entry = await self.cache.store.cache.get(key, time.time())
            return Abandoned() if entry is None else Stored(entry)
        return Abandoned()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)
        await self.reader.aclose()  # the link, shared, is the services' to close


def _encode(outcome: Ending) -> dict[str, Any]:
    if isinstance(outcome, Reply):
        return {
            "kind": "reply",
            "status": outcome.status,
            "headers": json.dumps(outcome.headers),
            "body": outcome.body,
            "images": outcome.images,
            "cost": outcome.cost_nanos,
        }
    if isinstance(outcome, StreamEnd):
        return {
            "kind": "stream_end",
            "outcome": outcome.outcome.value,
            "trailer": outcome.trailer,
            "images": outcome.images,
            "cost": outcome.cost_nanos,
        }
    if isinstance(outcome, Failed):
        error = outcome.error
        return {
            "kind": "failed",
            "status": error.status,
            "message": error.message,
            "type": error.type,
            "code": error.code or "",
            "headers": json.dumps(dict(error.headers or {})),
        }
    return {"kind": "stored" if isinstance(outcome, Stored) else "abandoned"}


class _Mirror:
    """A leading InFlight's events, written in order to its Redis stream by one task, while a
    second keeps the claim alive until the answer is stored (or will not be); then the claim is
    released."""

    def __init__(self, remote: RemoteFlights, key: str, flight: str) -> None:
        self.remote = remote
        self.key = key
        self.flight = flight
        self._streaming = False  # a stream is mirrored event by event from its start
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat())
        remote._spawn(self._write())

    def started(self, headers: dict[str, str]) -> None:
        self._streaming = True
        self._queue.put_nowait({"t": "start", "headers": json.dumps(headers)})

    def appended(self, data: bytes) -> None:
        self._queue.put_nowait({"t": "data", "d": data})

    def ended(self, outcome: Ending) -> None:
        self._queue.put_nowait({"t": "end", **_encode(outcome)})

    def closed(self, stored: CacheEntry | None) -> None:
        self._queue.put_nowait({"t": "closed", "stored": stored is not None})
        self._queue.put_nowait(None)

    async def _write(self) -> None:
        redis, stream = self.remote.redis, FLIGHT + self.flight
        keys = [stream, WATCH + self.flight, LEAD + self.key]
        released = False
        later: Any = _NOTHING  # an item read ahead, handled next
        try:
            while True:
                fields = await self._queue.get() if later is _NOTHING else later
                later = _NOTHING
                if fields is None:
                    break
                if fields["t"] == "closed":
                    # Watchers that came after the answer was written learn it is in the cache
                    # (those that have their ending read no further); the claim goes.
                    news = ["t", "end", "kind", "stored"] if fields["stored"] else []
                    await self.remote._if_watched(
                        keys=keys, args=[self.flight, STREAM_TTL_S, "1", *news]
                    )
                    released = True
                    continue
                if fields["t"] == "end" and not self._streaming:
                    pairs = [item for pair in fields.items() for item in pair]
                    # The closing follows within moments (once the answer is stored): one call
                    # writes the ending and releases the claim. A watcher then has its ending,
                    # and a request that comes after finds the entry committed.
                    later = await self._next_within(CLOSING_WAIT_S)
                    closing = isinstance(later, dict) and later["t"] == "closed"
                    await self.remote._if_watched(
                        keys=keys, args=[self.flight, STREAM_TTL_S, "1" if closing else "0", *pairs]
                    )
                    if closing:
                        released, later = True, _NOTHING
                    continue
                async with redis.pipeline(transaction=False) as pipe:
                    pipe.xadd(stream, fields)
                    pipe.expire(stream, STREAM_TTL_S)
                    await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("could not share %s with other replicas: %s", self.key[:12], exc)
        finally:
            self._heartbeat.cancel()
            if not released:
                with contextlib.suppress(RedisError, OSError):
                    await self.remote._if_ours(keys=[LEAD + self.key], args=[self.flight, "0"])

    async def _next_within(self, seconds: float) -> Any:
        """The next item if it comes within `seconds`, else _NOTHING (it stays queued)."""
        try:
            return await asyncio.wait_for(self._queue.get(), seconds)
        except TimeoutError:
            return _NOTHING

    async def _beat(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            while True:
                await asyncio.sleep(HEARTBEAT_S)
                await self.remote._if_ours(keys=[LEAD + self.key], args=[self.flight, LEAD_TTL_MS])
