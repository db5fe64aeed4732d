"""create_app(settings): wiring only. What a request goes through is in pipeline.py, what the app
does at start, in between and at its end in lifecycle.py."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway import errors
from gateway.admin import accounts
from gateway.admin.api import create_admin_app
from gateway.batch import batches as batch_routes
from gateway.batch import files as file_routes
from gateway.console import create_console_app
from gateway.edge.auth import authenticate
from gateway.edge.endpoints import endpoint_for
from gateway.edge.guard import watch_requests
from gateway.errors import GatewayError, error_body, storage_unavailable
from gateway.ops import routes as ops
from gateway.ops.logs import redact_secret
from gateway.proxy import pipeline
from gateway.proxy.client import Client
from gateway.proxy.flow import Flow
from gateway.responses import routes as response_routes
from gateway.runtime import lifecycle
from gateway.runtime.services import Services
from gateway.runtime.state import LIFECYCLE, SERVICES, WORKER, Lifecycle
from gateway.settings import Settings
from gateway.store.failures import describe, store_failure

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REQUEST_ID = web.RequestKey("gateway_request_id", str)


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
    except errors.CLIENT_GONE:
        raise  # the client left; there is no one to answer
    except Exception as exc:
        if store_failure(exc):  # the store is down or slow (an admin page, say): say so
            log.error("%s %s: the store failed (%s)", request.method, request.path, describe(exc))
            return storage_unavailable("the store does not answer").response()
        log.exception("unexpected error handling %s %s", request.method, request.path)
        return web.json_response(
            error_body("The gateway had an internal error.", type="server_error"), status=500
        )


async def proxy(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    flow = Flow(
        request=request,
        services=services,
        endpoint=endpoint_for(request.match_info["tail"]),
        upstream_path="",  # set by the first stage, once the path is known to be safe
        request_id=request[REQUEST_ID],
        client=Client(request, services.metrics),
    )
    return await pipeline.run(flow)


async def create_response(request: web.Request) -> web.StreamResponse:
    """`POST /v1/responses`: a response that can make images, through the pipeline."""
    return await response_routes.create(request, request[REQUEST_ID])


async def own_key(request: web.Request) -> web.StreamResponse:
    """`GET /v1/gateway/key`: the caller's own key and team standing, with its gateway key."""
    store = request.app[SERVICES].store
    key, team = await authenticate(store, request.headers.get("Authorization"))
    return web.json_response(await accounts.own_standing(store, key, team))


async def to_console(request: web.Request) -> web.StreamResponse:
    raise web.HTTPPermanentRedirect("/console/")


async def root(request: web.Request) -> web.StreamResponse:
    """`/`: the console when it is on; else what this is and where its API is."""
    if request.app[SERVICES].settings.admin_token is not None:
        raise web.HTTPFound("/console/")
    return web.json_response(
        {
            "service": "images-gateway",
            "api": "/v1/images/*",
            "openapi": "/openapi.json",
            "console": "off: set GATEWAY_ADMIN_TOKEN",
        }
    )


async def not_images(request: web.Request) -> web.StreamResponse:
    raise GatewayError(
        404,
        f"Invalid URL ({request.method} {request.path}): this gateway serves /v1/images/* (and"
        " image batches through /v1/files and /v1/batches).",
        code="unknown_url",
    )


def create_app(settings: Settings, *, worker: bool = False) -> web.Application:
    """The gateway app. `worker`: this process is one of several serving the same data dir."""
    if settings.upstream_api_key is not None:
        redact_secret(settings.upstream_api_key.get_secret_value())
    app = web.Application(middlewares=[watch_requests, request_id, openai_errors])
    app[SERVICES] = Services.for_settings(settings)
    app[LIFECYCLE] = Lifecycle()
    app[WORKER] = worker
    lifecycle.add_to(app)
    app.add_subapp("/admin", create_admin_app())
    app.router.add_get("/", root)
    app.router.add_get("/console", to_console)  # before the console's own prefix matches it
    app.add_subapp("/console", create_console_app())
    ops.add_routes(app)
    app.router.add_route("*", "/v1/images/{tail:.+}", proxy)
    app.router.add_get("/v1/gateway/key", own_key)
    file_routes.add_routes(app)
    batch_routes.add_routes(app)
    app.router.add_post("/v1/responses", create_response)
    response_routes.add_routes(app)
    app.router.add_route("*", "/v1/{tail:.*}", not_images)
    return app
