"""Gauges the store knows (budgets, spend, the cache's size), read at scrape time so that every
worker reports the same truth."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.accounting.periods import Periods
from gateway.money import NANOS_PER_USD
from gateway.store.base import CacheStats, Spend, Store
from gateway.store.records import Team

log = logging.getLogger(__name__)


@dataclass(eq=False)  # a registry keys its collectors by identity
class StoreSnapshot(Collector):
    """The store's side of the metrics, read once per scrape: every team's budget and spend in
    its current period, and the cache's size. `store_up` is False when the store did not answer
    (then the rest is empty)."""

    store_up: bool = True
    teams: list[tuple[Team, Spend]] = field(default_factory=list)
    cache: CacheStats | None = None
    cache_max_bytes: int = 0

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("gateway_store_up", "1 when the store answered this scrape.")
        up.add_metric([], 1 if self.store_up else 0)
        yield up
        yield from self._budgets()
        if self.cache is not None:
            yield _gauge(
                "gateway_cache_entries", "Entries in the response cache.", self.cache.entries
            )
            yield _gauge(
                "gateway_cache_bytes", "Bytes of cached bodies the entries use.", self.cache.bytes
            )
            yield _gauge(
                "gateway_cache_max_bytes",
                "The cache's size limit (GATEWAY_CACHE_MAX_BYTES).",
                self.cache_max_bytes,
            )

    def _budgets(self) -> Iterator[Metric]:
        budget = GaugeMetricFamily(
            "gateway_budget_usd", "Each team's budget for its current period.", labels=["team"]
        )
        spent = GaugeMetricFamily(
            "gateway_budget_spent_usd",
            "What each team has spent in its budget's current period (total when it has none).",
            labels=["team"],
        )
        remaining = GaugeMetricFamily(
            "gateway_budget_remaining_usd",
            "What each team with a budget can still spend: budget - spent - held by requests in"
            " flight.",
            labels=["team"],
        )
        for team, spend in self.teams:
            spent.add_metric([team.name], spend.spent_nanos / NANOS_PER_USD)
            if spend.budget_nanos is not None and spend.remaining_nanos is not None:
                budget.add_metric([team.name], spend.budget_nanos / NANOS_PER_USD)
                remaining.add_metric([team.name], spend.remaining_nanos / NANOS_PER_USD)
        yield from (budget, spent, remaining)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, documentation)
    gauge.add_metric([], value)
    return gauge


async def read_store_snapshot(store: Store, cache_max_bytes: int) -> StoreSnapshot:
    """The store's gauges as of now; a store that fails gives `store_up` 0, not an error."""
    now = dt.datetime.now(dt.UTC)
    periods = Periods.at(now)
    try:
        teams = [
            (team, await store.spend("team", str(team.id), periods, now.timestamp()))
            for team in await store.list_teams()
        ]
        cache = await store.cache.stats()
    except Exception:
        log.exception("metrics: the store did not answer")
        return StoreSnapshot(store_up=False)
    return StoreSnapshot(teams=teams, cache=cache, cache_max_bytes=cache_max_bytes)
