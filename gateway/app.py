"""create_app(settings): wiring only. What a request goes through is in pipeline.py."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from gateway import accounts, ops, pipeline
from gateway.admin import create_admin_app
from gateway.auth import authenticate
from gateway.cache.cache import ResponseCache
from gateway.endpoints import endpoint_for
from gateway.errors import GatewayError, error_body
from gateway.flow import Flow
from gateway.guard import watch_requests
from gateway.journal import LedgerJournal, settle_holds
from gateway.logs import redact_secret
from gateway.metrics import Metrics
from gateway.quota import RateLimiter
from gateway.relay import CLIENT_GONE
from gateway.settings import Settings
from gateway.state import (
    CACHE,
    DETACHED,
    ENDING_S,
    JOURNAL,
    LIFECYCLE,
    METRICS,
    PRICES,
    RATE_LIMITER,
    SETTINGS,
    STORE,
    UPSTREAM,
    WORKER,
    Lifecycle,
    PriceBook,
)
from gateway.store import open_store
from gateway.upstream import Upstream

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REQUEST_ID = web.RequestKey("gateway_request_id", str)
HOUSEKEEPING_INTERVAL_S = 10.0


@web.middleware
async def request_id(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request gets an id, returned as `x-gateway-request-id` (and as `x-request-id` when
    upstream did not answer, so the SDKs' `request_id` always names something)."""
    request[REQUEST_ID] = "req_gw_" + secrets.token_hex(12)
    response = await handler(request)
    if not response.prepared:
        stamp(request, response)
    return response


def stamp(request: web.Request, response: web.StreamResponse) -> None:
    """The gateway's own headers on a response it made itself (before it is prepared)."""
    rid = request[REQUEST_ID]
    response.headers["x-gateway-request-id"] = rid
    response.headers.setdefault("x-request-id", rid)
    if request.path.startswith("/v1/"):
        # Refusals cost nothing; relayed responses already carry what they cost.
        response.headers.setdefault("x-gateway-cost-usd", "0.00")
        response.headers.setdefault("x-gateway-cache", "bypass")


@web.middleware
async def openai_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Whatever goes wrong before a response has started becomes an OpenAI-shaped error."""
    try:
        return await handler(request)
    except GatewayError as exc:
        if exc.status != 408:
            return exc.response()
        # A client too slow to send its body is answered and let go at once (rather than
        # read for aiohttp's lingering time, which is what it is too slow for).
        response = exc.response()
        response.force_close()
        stamp(request, response)
        await response.prepare(request)
        await response.write_eof()
        if request.transport is not None:
            request.transport.close()
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "unknown_url", 405: "method_not_allowed"}.get(exc.status)
        message = (
            f"Invalid URL ({request.method} {request.path})" if exc.status == 404 else (exc.reason)
        )
        return web.json_response(
            error_body(message, type="invalid_request_error", code=code), status=exc.status
        )
    except CLIENT_GONE:
        raise  # the client left; there is no one to answer
    except Exception:
        log.exception("unexpected error handling %s %s", request.method, request.path)
        return web.json_response(
            error_body("The gateway had an internal error.", type="server_error"), status=500
        )


async def proxy(request: web.Request) -> web.StreamResponse:
    endpoint = endpoint_for(request.match_info["tail"])
    flow = Flow(
        request=request,
        endpoint=endpoint,
        upstream_path="",  # set by the first stage, once the path is known to be safe
        request_id=request[REQUEST_ID],
    )
    return await pipeline.run(flow)


async def own_key(request: web.Request) -> web.StreamResponse:
    """`GET /v1/gateway/key`: the caller's own key and team standing, with its gateway key."""
    store = request.app[STORE]
    key, team = await authenticate(store, request.headers.get("Authorization"))
    return web.json_response(await accounts.own_standing(store, key, team))


async def not_images(request: web.Request) -> web.StreamResponse:
    raise GatewayError(
        404,
        f"Invalid URL ({request.method} {request.path}): this gateway serves only /v1/images/*.",
        code="unknown_url",
    )


async def _resources(app: web.Application) -> AsyncIterator[None]:
    """Open the store (migrated) and the upstream session for the app's life. On the way out,
    requests still finishing for clients that left get what remains of the shutdown grace to
    write their ledger rows; then the session and the store close (the cache's hit counts and
    the store's log are flushed first)."""
    settings = app[SETTINGS]
    store, upstream, cache = app[STORE], app[UPSTREAM], app[CACHE]
    await store.connect()
    try:
        await store.migrate()
        worker = app[WORKER]
        if not worker:  # several workers share the store and dirs: the supervisor does this
            await _settle_the_books(app, dead_owners=None)
            empty_spool_dir(settings)
        await cache.start(empty_tmp=not worker)
        await upstream.start()
        housekeeping = asyncio.create_task(_housekeeping(app))
        try:
            yield
        finally:
            housekeeping.cancel()
            await _finish_detached(app, _grace_left(app))
            deadline = app[LIFECYCLE].deadline
            if deadline is not None:
                deadline.cancel()
            await upstream.close()
            await cache.close()
    finally:
        await store.close()


async def _housekeeping(app: web.Application) -> None:
    """Every few seconds: checkpoint the store, replay journaled ledger rows and settle expired
    holds, forget idle rate-limit windows, write cache hit counts and drop expired entries."""
    while True:
        await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)
        try:
            await app[STORE].checkpoint()
            await _settle_the_books(app, dead_owners=[])
            app[RATE_LIMITER].forget_idle(time.monotonic())
            await app[CACHE].housekeeping()
        except Exception:
            log.exception("housekeeping failed; trying again shortly")


async def _settle_the_books(app: web.Application, dead_owners: list[str] | None) -> None:
    """Journaled rows go into the store, then holds that will never settle become rows: in that
    order, so a journaled request is not also charged as an orphan."""
    metrics = app[METRICS]
    metrics.ledger_replayed.inc(await app[JOURNAL].replay(app[STORE]))
    metrics.orphaned.inc(await settle_holds(app[STORE], dead_owners=dead_owners))


async def _stopping(app: web.Application) -> None:
    """Shutdown has begun (the listener is closed): /readyz says so, and the grace starts. At
    its end, upstream reads still going are cut, so streams end with their `stream_cut` event
    and are charged for what they delivered, rather than being dropped mid-event."""
    lifecycle = app[LIFECYCLE]
    lifecycle.stopping_at = time.monotonic()
    lifecycle.deadline = asyncio.get_running_loop().call_later(
        app[SETTINGS].shutdown_grace_s, _cut_upstream, app
    )


def _cut_upstream(app: web.Application) -> None:
    cut = app[UPSTREAM].cut_all()
    if cut:
        log.warning("shutdown grace is over: cut %d upstream responses still being read", cut)


def _grace_left(app: web.Application) -> float:
    """What remains of the grace and the time to send endings after it."""
    started = app[LIFECYCLE].stopping_at or time.monotonic()
    deadline = started + app[SETTINGS].shutdown_grace_s + ENDING_S
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


def create_app(settings: Settings, *, worker: bool = False) -> web.Application:
    """The gateway app. `worker`: this process is one of several serving the same data dir."""
    if settings.upstream_api_key is not None:
        redact_secret(settings.upstream_api_key.get_secret_value())
    app = web.Application(middlewares=[watch_requests, request_id, openai_errors])
    app[SETTINGS] = settings
    app[STORE] = open_store(settings.resolved_database_url)
    app[UPSTREAM] = Upstream(settings)
    app[PRICES] = PriceBook(settings.prices)
    app[RATE_LIMITER] = RateLimiter()
    app[METRICS] = Metrics(key_labels=settings.metrics_key_labels)
    app[CACHE] = ResponseCache(settings, app[STORE], app[METRICS].cache_evicted)
    app[JOURNAL] = LedgerJournal(settings.journal_dir)
    app[DETACHED] = set()
    app[LIFECYCLE] = Lifecycle()
    app[WORKER] = worker
    app.cleanup_ctx.append(_resources)
    app.on_shutdown.append(_stopping)
    app.add_subapp("/admin", create_admin_app())
    ops.add_routes(app)
    app.router.add_route("*", "/v1/images/{tail:.+}", proxy)
    app.router.add_get("/v1/gateway/key", own_key)
    app.router.add_route("*", "/v1/{tail:.*}", not_images)
    return app
