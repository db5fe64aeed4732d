"""The app's life: what opens before the first request and closes after the last, the
housekeeping in between, and a graceful stop.

What holds: the store is migrated and the books settled (journaled rows replayed, holds of dead
processes charged) before serving; on SIGTERM no new connection is taken, what is in flight gets
`GATEWAY_SHUTDOWN_GRACE_S` to finish and write its ledger row, upstream reads still going are
then cut (streams end with their `stream_cut` event), and the store closes last.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from gateway.accounting.journal import settle_holds
from gateway.alerts.delivery import Deliverer
from gateway.batch.poller import poll_batches
from gateway.errors import CannotStart
from gateway.replicas.changes import KEYS, PRICES
from gateway.responses.background import poll_responses
from gateway.runtime.state import ENDING_S, LIFECYCLE, SERVICES, WORKER
from gateway.settings import Settings
from gateway.store import Store
from gateway.store.failures import cannot_open, safe_url, store_failure

log = logging.getLogger(__name__)
HOUSEKEEPING_INTERVAL_S = 10.0


def add_to(app: web.Application) -> None:
    """What the app opens, in order, one cleanup context each: aiohttp closes them in reverse,
    and a resource that fails to open closes only those opened before it."""
    app.cleanup_ctx.extend(
        (store, redis, books, cache, upstream, replicas, background_tasks, housekeeping, alerts)
    )
    app.on_shutdown.append(stopping)


async def store(app: web.Application) -> AsyncIterator[None]:
    """The store, connected and migrated, for the app's life; closed last."""
    services = app[SERVICES]
    try:
        await open_store_or_say_why(services.store, services.settings.resolved_database_url)
        yield
    finally:
        await services.store.close()


async def redis(app: web.Application) -> AsyncIterator[None]:
    """Redis answers (when there is one): the limiter, the cache and the changes share it."""
    link = app[SERVICES].redis
    if link is None:
        yield
        return
    try:
        await _check_redis(app)
        yield
    finally:
        await app[SERVICES].limiter.close()
        await link.close()


async def books(app: web.Application) -> AsyncIterator[None]:
    """The books are settled before serving (journaled rows replayed, holds of dead processes
    charged) and leftover spool files removed; with several workers sharing the store and the
    directories, the supervisor does this."""
    services = app[SERVICES]
    if not app[WORKER]:
        await _settle_the_books(app)
        empty_spool_dir(services.settings)
    yield


async def cache(app: web.Application) -> AsyncIterator[None]:
    """The response cache (its directory, index and object store); on the way out, what is
    being stored goes in and the hit counts are written."""
    response_cache = app[SERVICES].cache
    await response_cache.start(empty_tmp=not app[WORKER])
    try:
        yield
    finally:
        await response_cache.close()


async def upstream(app: web.Application) -> AsyncIterator[None]:
    """The upstream session; closed once the requests still reading from it have ended."""
    session = app[SERVICES].upstream
    await session.start()
    try:
        yield
    finally:
        deadline = app[LIFECYCLE].deadline
        if deadline is not None:
            deadline.cancel()
        await session.close()


async def replicas(app: web.Application) -> AsyncIterator[None]:
    """Changes to keys and teams made here are told to the other replicas; theirs drop the keys
    kept here, and their price reloads reload here too."""
    services = app[SERVICES]
    keys = services.store.keys
    keys.on_change = functools.partial(services.changes.publish, KEYS)
    await services.changes.start({KEYS: keys.forget, PRICES: services.reload_prices})
    try:
        yield
    finally:
        await services.changes.close()


async def housekeeping(app: web.Application) -> AsyncIterator[None]:
    """Every few seconds, in a task of its own; cancelled first on the way out."""
    task = app[SERVICES].tasks.spawn("housekeeping", _housekeeping(app), lasting=True)
    yield
    task.cancel()


async def alerts(app: web.Application) -> AsyncIterator[None]:
    """Budget alerts' deliveries, from the store's outbox, for the app's life."""
    services = app[SERVICES]
    deliverer = Deliverer(
        services.settings,
        services.store,
        lambda result: services.metrics.webhook_deliveries.labels(result).inc(),
    )
    task = services.tasks.spawn("webhook deliveries", deliverer.run(), lasting=True)
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def background_tasks(app: web.Application) -> AsyncIterator[None]:
    """On the way out (first of all), requests still finishing for clients that left and cache
    stores get what remains of the shutdown grace to end; what is left then is cancelled."""
    yield
    await app[SERVICES].tasks.close(_grace_left(app))


async def open_store_or_say_why(store: Store, url: str) -> None:
    """Connect and migrate, or raise CannotStart with one line naming the store and what to do
    (a damaged file, a server that does not answer)."""
    try:
        await store.connect()
        await store.migrate()
    except Exception as exc:
        if not store_failure(exc):
            raise
        raise CannotStart(cannot_open(url, exc)) from exc


async def _check_redis(app: web.Application) -> None:
    redis = app[SERVICES].redis
    if redis is None:
        return
    from gateway.replicas.redis_link import RedisUnavailable

    try:
        await redis.check()
    except RedisUnavailable as exc:
        raise CannotStart(
            f"Redis at {safe_url(redis.url)} does not answer ({exc}): start it, or check"
            " GATEWAY_REDIS_URL (unset, each process counts its own limits)"
        ) from exc


async def _housekeeping(app: web.Application) -> None:
    """Every few seconds: checkpoint the store, say this process lives, replay journaled ledger
    rows and settle the holds that will never settle (expired, or held by a process that has
    died: a worker or a replica killed mid-request, here or on another host), forget idle
    rate-limit windows, write cache hit counts and drop expired entries."""
    services = app[SERVICES]
    steps: tuple[tuple[str, Callable[[], Awaitable[object]]], ...] = (
        ("checkpoint", services.store.checkpoint),
        ("settling the books", functools.partial(_settle_the_books, app)),
        ("forgetting idle rate windows", _as_coroutine(services.limiter.forget_idle)),
        ("cache housekeeping", services.cache.housekeeping),
        ("polling batches", functools.partial(poll_batches, services)),
        ("polling background responses", functools.partial(poll_responses, services)),
    )
    while True:
        await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)
        # Each step on its own: one that fails (a sick store, say) never keeps the others from
        # running, and all are tried again next round.
        for name, step in steps:
            try:
                await step()
            except Exception:
                log.exception("housekeeping: %s failed; trying again shortly", name)


def _as_coroutine(function: Callable[[], object]) -> Callable[[], Awaitable[object]]:
    async def run() -> object:
        return function()

    return run


async def _settle_the_books(app: web.Application) -> None:
    """This process's heartbeat goes in; journaled rows go into the store, then holds that will
    never settle become rows: in that order, so a journaled request is not also charged as an
    orphan."""
    metrics = app[SERVICES].metrics
    silent = await app[SERVICES].heartbeats.beat()
    replayed = await app[SERVICES].journal.replay(app[SERVICES].store)
    metrics.ledger_replayed.inc(replayed.rows)
    metrics.ledger_quarantined.inc(replayed.quarantined)
    metrics.orphaned.inc(await settle_holds(app[SERVICES].store, silent=silent))


async def stopping(app: web.Application) -> None:
    """Shutdown has begun (the listener is closed): /readyz says so, and the grace starts. At
    its end, upstream reads still going are cut, so streams end with their `stream_cut` event
    and are charged for what they delivered, rather than being dropped mid-event."""
    lifecycle = app[LIFECYCLE]
    lifecycle.stopping_at = time.monotonic()
    lifecycle.deadline = asyncio.get_running_loop().call_later(
        app[SERVICES].settings.shutdown_grace_s, _cut_upstream, app
    )


def _cut_upstream(app: web.Application) -> None:
    cut = app[SERVICES].upstream.cut_all()
    if cut:
        log.warning("shutdown grace is over: cut %d upstream responses still being read", cut)


def _grace_left(app: web.Application) -> float:
    """What remains of the grace and the time to send endings after it."""
    started = app[LIFECYCLE].stopping_at or time.monotonic()
    deadline = started + app[SERVICES].settings.shutdown_grace_s + ENDING_S
    return max(0.0, deadline - time.monotonic())


def empty_spool_dir(settings: Settings) -> None:
    """Spool files left by a process that died are removed before serving."""
    settings.spool_dir.mkdir(parents=True, exist_ok=True)
    for leftover in settings.spool_dir.glob("body-*"):
        leftover.unlink(missing_ok=True)
