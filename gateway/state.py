"""Typed application state: what the app holds for its whole life, behind `web.AppKey`s."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.cache.cache import ResponseCache
from gateway.journal import LedgerJournal
from gateway.metrics import Metrics
from gateway.pricing import PriceTable, load_prices
from gateway.quota import RateLimiter
from gateway.settings import Settings
from gateway.store import Store
from gateway.upstream import Upstream


class PriceBook:
    """The price table in force; `reload()` swaps in a new one only if it loads whole."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.table = load_prices(path)

    def reload(self) -> PriceTable:
        """Read the price file again; on any error the table in force stays (PriceError)."""
        self.table = load_prices(self.path)
        return self.table


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


SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
UPSTREAM = web.AppKey("upstream", Upstream)
PRICES = web.AppKey("prices", PriceBook)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
CACHE = web.AppKey("cache", ResponseCache)
METRICS = web.AppKey("metrics", Metrics)
JOURNAL = web.AppKey("journal", LedgerJournal)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
# True when this process is one of several workers serving the same port and data dir.
WORKER = web.AppKey("worker", bool)
# Requests that finish after their client left (to charge what upstream produced); the app waits
# for them before it closes the store.
DETACHED: web.AppKey[set[asyncio.Task[Any]]] = web.AppKey("detached")
