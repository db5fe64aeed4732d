"""Typed application state: what the app holds for its whole life, behind `web.AppKey`s."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web

from gateway.runtime.services import Services

ENDING_S = 2.0


@dataclass
class Lifecycle:
    """Where the app is in its life. `stopping_at` (monotonic seconds) is set when shutdown
    begins: no new connections are taken from then on, and what is in flight has until
    `stopping_at + shutdown_grace_s` to finish; then upstream reads are cut, and the relays get
    ENDING_S more to send their endings and write their ledger rows."""

    stopping_at: float | None = None
    deadline: asyncio.TimerHandle | None = None  # ends upstream reads when the grace is over

    @property
    def stopping(self) -> bool:
        return self.stopping_at is not None


# The store, upstream, prices, limiter, cache, metrics and journal, with the settings.
SERVICES = web.AppKey("services", Services)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
# True when this process is one of several workers serving the same port and data dir.
WORKER = web.AppKey("worker", bool)
