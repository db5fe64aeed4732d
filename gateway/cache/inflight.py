"""In-flight coalescing: identical requests that arrive while the first is in flight share its
one upstream call.

The first request for a key becomes its leader (claiming is synchronous, so two requests can never
both lead); the others follow. A leader always ends its InFlight with an Outcome, whatever
happens to it: followers are served from that outcome, or from the stream the leader is still
relaying (its Tee), and never wait on a leader that has gone.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from gateway.cache.files import Tee
from gateway.errors import GatewayError
from gateway.outcome import Outcome
from gateway.store.base import CacheEntry


@dataclass(frozen=True, slots=True)
class Stored:
    """The leader's response is in the cache: followers serve it from there."""

    entry: CacheEntry


@dataclass(frozen=True, slots=True)
class Reply:
    """The leader's whole response, held in memory (an upstream error, or a body still being
    stored). `cost_nanos` is what the leader paid for it."""

    status: int
    headers: dict[str, str]
    body: bytes
    images: int
    cost_nanos: int


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The leader's stream has ended (`outcome` as its ledger says: ok, stream_cut, ...);
    followers have its events in the tee. `trailer` is what followers send after them (the
    gateway's `error` event if the stream was cut, else nothing)."""

    outcome: Outcome
    trailer: bytes
    images: int
    cost_nanos: int


@dataclass(frozen=True, slots=True)
class Failed:
    """The upstream call failed without a response: followers get the same error."""

    error: GatewayError


@dataclass(frozen=True, slots=True)
class Abandoned:
    """The leader ended without asking upstream (refused, or its client left first), or its
    response cannot be shared: followers go on by themselves."""


# How a leader's InFlight ended, for its followers (not the request's own `Outcome`).
Ending = Stored | Reply | StreamEnd | Failed | Abandoned


@dataclass(eq=False)
class Ticket:
    """A follower's place: whether it holds a reference on the leader's tee."""

    holds_tee: bool = False


class Mirror(Protocol):
    """Where else a leader's InFlight is told what happens: identical requests on other
    replicas follow it there (remote.py). Calls must not block: they queue."""

    def started(self, headers: dict[str, str]) -> None: ...
    def appended(self, data: bytes) -> None: ...
    def ended(self, outcome: Ending) -> None: ...
    def closed(self, stored: CacheEntry | None) -> None:
        """New requests no longer join here: the answer is in the cache (`stored`), or will
        not be. Until now, other replicas' identical requests still joined."""


@dataclass(eq=False)
class InFlight:
    key: str
    stream_headers: dict[str, str] | None = None
    tee: Tee | None = None
    outcome: Ending | None = None
    followers: list[Ticket] = field(default_factory=list)
    mirror: Mirror | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        """Wake every follower waiting for news (more stream bytes, or the outcome)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self) -> None:
        await self._changed.wait()

    def join(self) -> Ticket:
        ticket = Ticket()
        if self.tee is not None:
            self.tee.retain()
            ticket.holds_tee = True
        self.followers.append(ticket)
        return ticket

    async def leave(self, ticket: Ticket) -> None:
        self.followers.remove(ticket)
        if ticket.holds_tee and self.tee is not None:
            ticket.holds_tee = False
            await self.tee.release()

    def attach_tee(self, tee: Tee, headers: dict[str, str]) -> None:
        """The leader started relaying a stream: followers waiting now read it too."""
        self.tee, self.stream_headers = tee, headers
        for ticket in self.followers:
            tee.retain()
            ticket.holds_tee = True
        if self.mirror is not None:
            self.mirror.started(headers)
        self.notify()

    def appended(self, data: bytes) -> None:
        """More of the stream is in the tee."""
        if self.mirror is not None:
            self.mirror.appended(data)
        self.notify()

    def end(self, outcome: Ending) -> None:
        if self.outcome is None:
            self.outcome = outcome
            if self.mirror is not None:
                self.mirror.ended(outcome)
            self.notify()


class InFlightRegistry:
    """Requests in flight by cache key (the key includes its scope)."""

    def __init__(self) -> None:
        self._by_key: dict[str, InFlight] = {}
        # How many have been removed: a lookup that missed while this moved may have missed an
        # entry stored just then (serve_from_cache looks again).
        self.removed = 0

    def claim(self, key: str) -> tuple[InFlight, bool]:
        """The request's InFlight, and whether the caller is its leader."""
        current = self._by_key.get(key)
        if current is not None:
            return current, False
        current = self._by_key[key] = InFlight(key)
        return current, True

    def remove(self, inflight: InFlight, stored: CacheEntry | None = None) -> None:
        """New requests no longer join it (once its outcome is in the cache, `stored`, or it
        failed); nor, through its mirror, do those of other replicas."""
        if self._by_key.get(inflight.key) is inflight:
            del self._by_key[inflight.key]
            self.removed += 1
        if inflight.mirror is not None:
            inflight.mirror.closed(stored)
            inflight.mirror = None

    def __len__(self) -> int:
        return len(self._by_key)
