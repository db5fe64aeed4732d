"""What operators and their orchestrators ask: `/healthz`, `/readyz` and `/metrics`.

- `/healthz`: the process serves (a liveness probe; it touches nothing else).
- `/readyz`: the store answers, upstream is reachable (probed at most every
  `GATEWAY_READINESS_CACHE_S`), and the gateway is not shutting down. 503 says which is not.
  A Redis that cannot be reached is reported under `degraded`, still 200: requests keep flowing.
- `/metrics`: Prometheus text; behind `GATEWAY_METRICS_TOKEN` when one is set.
"""

from __future__ import annotations

import asyncio
import hmac

from aiohttp import web

# 0.0.4: the text format every Prometheus version parses (our names need nothing newer).
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from gateway.auth import bearer_token
from gateway.errors import GatewayError
from gateway.metrics import read_store_snapshot
from gateway.openapi import rendered
from gateway.state import LIFECYCLE, SERVICES

OPENAPI_JSON = rendered()


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    settings = app[SERVICES].settings
    checks: dict[str, str] = {}
    try:
        await app[SERVICES].store.ping()
        checks["store"] = "ok"
    except Exception as exc:  # any failure means not ready; say which
        checks["store"] = f"failed: {exc}"
    waiting = await app[SERVICES].journal.pending()
    # Rows in the journal: the store has been failing writes (they are replayed within 10 s).
    checks["ledger"] = f"{waiting} rows wait in the journal" if waiting else "ok"
    problem = await app[SERVICES].upstream.problem(
        settings.readiness_cache_s, settings.readiness_timeout_s
    )
    checks["upstream"] = problem or "ok"
    if app[LIFECYCLE].stopping:
        checks["shutdown"] = "in progress"
    ready = all(value == "ok" for value in checks.values())
    degraded = {}
    if (problem := app[SERVICES].limiter.problem) is not None:
        # Still ready: requests flow, with rate limits as GATEWAY_REDIS_LIMITS_ON_FAILURE says.
        degraded["redis"] = problem
    return web.json_response(
        {"status": "ready" if ready else "unavailable", **checks}
        | ({"degraded": degraded} if degraded else {}),
        status=200 if ready else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    app = request.app
    settings = app[SERVICES].settings
    if settings.metrics_token is not None:
        token = bearer_token(request.headers.get("Authorization")) or ""
        expected = settings.metrics_token.get_secret_value()
        if not hmac.compare_digest(token.encode(), expected.encode()):
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
