"""What operators and their orchestrators ask: `/healthz`, `/readyz` and `/metrics`.

- `/healthz`: the process serves (a liveness probe; it touches nothing else).
- `/readyz`: the store answers and takes writes (every request's hold goes there before
  upstream is asked), upstream is reachable (probed at most every `GATEWAY_READINESS_CACHE_S`),
  and the gateway is not shutting down. 503 says which is not. What still serves in a lesser way
  (a journal draining, quarantined rows, Redis or the object store away) is reported under
  `degraded`, still 200.
- `/metrics`: Prometheus text; behind `GATEWAY_METRICS_TOKEN` when one is set.
"""

from __future__ import annotations

import asyncio
import hmac
import time

from aiohttp import web

# 0.0.4: the text format every Prometheus version parses (our names need nothing newer).
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from gateway.accounting.journal import this_process
from gateway.admin.guard import client_address, trusted_networks
from gateway.edge.auth import bearer_token
from gateway.errors import GatewayError
from gateway.metrics import read_store_snapshot
from gateway.ops.openapi import rendered
from gateway.runtime.services import Services
from gateway.runtime.state import LIFECYCLE, SERVICES
from gateway.store.failures import describe

OPENAPI_JSON = rendered()


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """503 only when this process cannot serve: the store does not answer (within
    GATEWAY_DATABASE_TIMEOUT_S) or takes no writes, upstream is unreachable, or shutdown has
    begun. What serves on in a lesser way (rows waiting in the
    journal, rows quarantined, Redis or the object store away) is listed under `degraded`."""
    services = request.app[SERVICES]
    settings = services.settings
    checks = {"store": await _store_check(services), "ledger": await _ledger_check(services)}
    problem = await services.upstream.problem(
        settings.readiness_cache_s, settings.readiness_timeout_s
    )
    checks["upstream"] = problem or "ok"
    if request.app[LIFECYCLE].stopping:
        checks["shutdown"] = "in progress"
    ready = all(value == "ok" for value in checks.values())
    degraded = await _degraded(services)
    return web.json_response(
        {"status": "ready" if ready else "unavailable", **checks}
        | ({"degraded": degraded} if degraded else {}),
        status=200 if ready else 503,
    )


async def _store_check(services: Services) -> str:
    try:
        await asyncio.wait_for(services.store.ping(), services.settings.database_timeout_s)
    except Exception as exc:  # any failure means not ready; say which
        return f"failed: {describe(exc)}"
    return "ok"


async def _ledger_check(services: Services) -> str:
    """Whether the store takes writes, as a request's hold must go there before upstream is
    asked. While a write failure is remembered, a probe write (this process's heartbeat) tells
    whether it passes again, so readiness comes back by itself."""
    health = services.health
    if health.store_problem is not None:
        try:
            await asyncio.wait_for(
                services.store.heartbeat(this_process(), time.time()),
                services.settings.database_timeout_s,
            )
            health.store_wrote()
        except Exception as exc:
            health.store_failed(exc)
    if health.store_problem is None:
        return "ok"
    # A request's hold must go into the store before upstream is asked: no new request can be
    # served. (Rows of requests already in flight go to the journal, if it takes them.)
    journal = "fails too" if health.journal_problem else "takes the rows of requests in flight"
    return (
        f"failed: storage_unavailable: the store takes no writes ({health.store_problem});"
        f" the journal {journal}"
    )


async def _degraded(services: Services) -> dict[str, str]:
    degraded = {}
    if services.health.journal_problem is not None:
        degraded["journal_writes"] = f"failing ({services.health.journal_problem})"
    waiting = await services.journal.pending()
    if waiting:
        # The store has been failing writes; they are replayed within 10 s of it taking them.
        degraded["journal"] = f"{waiting} ledger rows wait in the journal"
    quarantined = await services.journal.quarantined()
    if quarantined:
        degraded["quarantine"] = (
            f"{quarantined} ledger rows the store refused are in"
            f" {services.journal.quarantine_dir} (see the log)"
        )
    objects = services.cache.objects
    if objects is not None and objects.problem is not None:
        degraded["object_store"] = f"{objects.problem}: cached bodies there are misses"
    if (problem := services.limiter.problem) is not None:
        # Requests flow, with rate limits as GATEWAY_REDIS_LIMITS_ON_FAILURE says.
        degraded["redis"] = problem
    return degraded


async def metrics(request: web.Request) -> web.Response:
    app = request.app
    settings = app[SERVICES].settings
    if settings.metrics_token is not None:
        address = client_address(request, trusted_networks(settings.trusted_proxies))
        app[SERVICES].auth_throttle.check(address)
        token = bearer_token(request.headers.get("Authorization")) or ""
        expected = settings.metrics_token.get_secret_value()
        if not hmac.compare_digest(token.encode(), expected.encode()):
            app[SERVICES].auth_throttle.failed(address, "metrics")
            raise GatewayError(401, "Invalid or missing metrics token.", code="invalid_token")
    snapshot = await read_store_snapshot(app[SERVICES].store, settings.cache_max_bytes)
    # Rendering reads the workers' metric files (several workers): not on the event loop.
    body = await asyncio.to_thread(app[SERVICES].metrics.render, snapshot)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


async def openapi(request: web.Request) -> web.Response:
    return web.Response(text=OPENAPI_JSON, content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
