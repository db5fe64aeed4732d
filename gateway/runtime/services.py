"""What the stages reach: one object per app that holds the store, the upstream client, the
prices, the rate limiter, the cache, the metrics, the ledger journal and the channel to other
replicas.

A request's Flow carries it (`flow.services`), so a stage needs no aiohttp app: a test hands it
a Services made of fakes. Backends plug in here (the PostgreSQL store, the Redis limiter and
change channel) without a stage knowing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.accounting.heartbeats import Heartbeats
from gateway.accounting.journal import LedgerJournal, this_process
from gateway.accounting.quota import Limiter, RateLimiter
from gateway.admin.guard import AuthThrottle
from gateway.alerts.thresholds import BudgetChecks
from gateway.cache.cache import ResponseCache
from gateway.metrics import Metrics
from gateway.pricing import PriceBook, PriceError
from gateway.proxy.upstream import Upstream
from gateway.replicas.changes import Changes, changes_for
from gateway.runtime.tasks import Tasks
from gateway.settings import Settings
from gateway.store import Store, open_store
from gateway.store.health import WriteHealth

if TYPE_CHECKING:
    from gateway.replicas.redis_link import RedisLink

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    store: Store
    upstream: Upstream
    prices: PriceBook
    limiter: Limiter
    cache: ResponseCache
    metrics: Metrics
    journal: LedgerJournal
    changes: Changes  # what other replicas must hear (through Redis, when there is one)
    health: WriteHealth  # whether the store and the journal take writes now
    redis: RedisLink | None  # the one Redis client, shared by limiter, cache and changes
    auth_throttle: AuthThrottle  # wrong admin credentials per client address
    tasks: Tasks  # the one owner of background work (detached requests, cache stores, ...)
    heartbeats: Heartbeats  # this process's, in the store: holds of silent ones are settled
    budget_checks: BudgetChecks  # budget alerts, checked once for many requests of a key

    @classmethod
    def for_settings(cls, settings: Settings) -> Services:
        """The services `settings` describe, not yet started (the app's lifecycle opens the
        store and the upstream session, and closes them)."""
        store = open_store(
            settings.resolved_database_url,
            pool_size=settings.database_pool_size,
            timeout_s=settings.database_timeout_s,
        )
        metrics = Metrics(key_labels=settings.metrics_key_labels)
        redis = redis_link_for(settings, metrics)
        return cls(
            settings=settings,
            store=store,
            upstream=Upstream(settings, on_waiting=metrics.upstream_waiting.set),
            prices=PriceBook(settings.prices),
            limiter=limiter_for(settings, redis),
            cache=ResponseCache(settings, store, metrics.cache_evicted, redis),
            metrics=metrics,
            journal=LedgerJournal(settings.ledger_journal_dir),
            changes=changes_for(redis),
            health=WriteHealth(),
            redis=redis,
            auth_throttle=AuthThrottle(metrics.admin_auth_failed),
            tasks=Tasks(),
            heartbeats=Heartbeats(store, this_process()),
            budget_checks=BudgetChecks(),
        )

    def reload_prices(self) -> bool:
        """Read the price file again (a bad one changes nothing); whether it was taken."""
        try:
            table = self.prices.reload()
        except PriceError as exc:
            log.error("price table NOT reloaded, the old one stays in force: %s", exc)
            return False
        log.info("price table reloaded: version %s from %s", table.version, table.path)
        return True


def redis_link_for(settings: Settings, metrics: Metrics) -> RedisLink | None:
    """The process's one Redis client when GATEWAY_REDIS_URL is set (redis loads only then)."""
    if settings.redis_url is None:
        return None
    from gateway.replicas.redis_link import RedisLink

    return RedisLink(
        settings.redis_url.get_secret_value(),
        settings.redis_timeout_s,
        on_state=metrics.redis_up.set,
        max_connections=settings.redis_max_connections,
    )


def limiter_for(settings: Settings, redis: RedisLink | None) -> Limiter:
    """Shared through Redis when GATEWAY_REDIS_URL is set; else in this process's memory."""
    if redis is None:
        return RateLimiter()
    from gateway.accounting.quota_redis import RedisRateLimiter

    return RedisRateLimiter(redis, on_failure=settings.redis_limits_on_failure)
