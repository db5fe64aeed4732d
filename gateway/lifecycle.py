"""The app's life: what opens before the first request and closes after the last, the
housekeeping in between, and a graceful stop.

What holds: the store is migrated and the books settled (journaled rows replayed, holds of dead
processes charged) before serving; on SIGTERM no new connection is taken, what is in flight gets
`GATEWAY_SHUTDOWN_GRACE_S` to finish and write its ledger row, upstream reads still going are
then cut (streams end with their `stream_cut` event), and the store closes last.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from gateway.changes import KEYS, PRICES
from gateway.errors import CannotStart
from gateway.heartbeats import Heartbeats
from gateway.journal import settle_holds, this_process
from gateway.settings import Settings
from gateway.state import DETACHED, ENDING_S, LIFECYCLE, SERVICES, WORKER
from gateway.store import Store
from gateway.store.failures import cannot_open, safe_url, store_failure

log = logging.getLogger(__name__)
HOUSEKEEPING_INTERVAL_S = 10.0


async def resources(app: web.Application) -> AsyncIterator[None]:
    """Open the store (migrated) and the upstream session for the app's life. On the way out,
    requests still finishing for clients that left get what remains of the shutdown grace to
    write their ledger rows; then the session and the store close (the cache's hit counts and
    the store's log are flushed first)."""
    settings = app[SERVICES].settings
    store, upstream, cache = app[SERVICES].store, app[SERVICES].upstream, app[SERVICES].cache
    try:
        await open_store_or_say_why(store, settings.resolved_database_url)
        await _check_redis(app)
        worker = app[WORKER]
        heartbeats = Heartbeats(store, this_process())
        if not worker:  # several workers share the store and dirs: the supervisor does this
            await _settle_the_books(app, heartbeats)
            empty_spool_dir(settings)
        await cache.start(empty_tmp=not worker)
        await upstream.start()
        await _hear_other_replicas(app)
        housekeeping = asyncio.create_task(_housekeeping(app, heartbeats))
        try:
            yield
        finally:
            housekeeping.cancel()
            await _finish_detached(app, _grace_left(app))
            deadline = app[LIFECYCLE].deadline
            if deadline is not None:
                deadline.cancel()
            await upstream.close()
            await app[SERVICES].changes.close()
            await app[SERVICES].limiter.close()
            await cache.close()
            if (redis := app[SERVICES].redis) is not None:
                await redis.close()
    finally:
        await store.close()


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
    from gateway.redis_link import RedisUnavailable

    try:
        await redis.check()
    except RedisUnavailable as exc:
        raise CannotStart(
            f"Redis at {safe_url(redis.url)} does not answer ({exc}): start it, or check"
            " GATEWAY_REDIS_URL (unset, each process counts its own limits)"
        ) from exc


async def _hear_other_replicas(app: web.Application) -> None:
    """Changes to keys and teams made here are told to the other replicas; theirs drop the keys
    kept here, and their price reloads reload here too."""
    services = app[SERVICES]
    keys = services.store.keys
    keys.on_change = functools.partial(services.changes.publish, KEYS)
    await services.changes.start({KEYS: keys.forget, PRICES: services.reload_prices})


async def _housekeeping(app: web.Application, heartbeats: Heartbeats) -> None:
    """Every few seconds: checkpoint the store, say this process lives, replay journaled ledger
    rows and settle the holds that will never settle (expired, or held by a process that has
    died: a worker or a replica killed mid-request, here or on another host), forget idle
    rate-limit windows, write cache hit counts and drop expired entries."""
    services = app[SERVICES]
    steps: tuple[tuple[str, Callable[[], Awaitable[object]]], ...] = (
        ("checkpoint", services.store.checkpoint),
        ("settling the books", functools.partial(_settle_the_books, app, heartbeats)),
        ("forgetting idle rate windows", _as_coroutine(services.limiter.forget_idle)),
        ("cache housekeeping", services.cache.housekeeping),
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


async def _settle_the_books(app: web.Application, heartbeats: Heartbeats) -> None:
    """This process's heartbeat goes in; journaled rows go into the store, then holds that will
    never settle become rows: in that order, so a journaled request is not also charged as an
    orphan."""
    metrics = app[SERVICES].metrics
    silent = await heartbeats.beat()
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


async def _finish_detached(app: web.Application, grace_s: float) -> None:
    pending = app[DETACHED].copy()
    if not pending:
        return
    log.info("waiting up to %gs for %d requests to finish", grace_s, len(pending))
    _, late = await asyncio.wait(pending, timeout=grace_s)
    for task in late:
        task.cancel()
    if late:
        await asyncio.wait(late)


def empty_spool_dir(settings: Settings) -> None:
    """Spool files left by a process that died are removed before serving."""
    settings.spool_dir.mkdir(parents=True, exist_ok=True)
    for leftover in settings.spool_dir.glob("body-*"):
        leftover.unlink(missing_ok=True)
