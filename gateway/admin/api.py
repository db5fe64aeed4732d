"""The admin API under /admin, behind `Authorization: Bearer $GATEWAY_ADMIN_TOKEN`.

With no token configured every admin route answers 403: the API is off, never open.
Money in JSON is a decimal string; inputs take a string or a number, parsed without float.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from gateway.accounting.usage_report import usage_report
from gateway.admin import accounts, audit, webhooks
from gateway.admin.guard import client_address, read_small_body, trusted_networks
from gateway.admin.requests import actor
from gateway.admin.requests import parse_body as _parse
from gateway.edge.auth import bearer_token
from gateway.errors import GatewayError, invalid_request
from gateway.ops.reconcile import reconcile
from gateway.runtime.state import SERVICES
from gateway.store import Conflict

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Model = TypeVar("Model", bound=BaseModel)


@web.middleware
async def require_admin_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    settings = request.config_dict[SERVICES].settings
    if settings.admin_token is None or not settings.admin_token.get_secret_value():
        raise GatewayError(
            403,
            "The admin API is disabled: set GATEWAY_ADMIN_TOKEN to enable it.",
            code="admin_disabled",
        )
    services = request.config_dict[SERVICES]
    address = client_address(request, trusted_networks(settings.trusted_proxies))
    services.auth_throttle.check(address)
    token = bearer_token(request.headers.get("Authorization")) or ""
    expected = settings.admin_token.get_secret_value()
    if not hmac.compare_digest(token.encode(), expected.encode()):
        services.auth_throttle.failed(address, "admin")
        raise GatewayError(401, "Invalid or missing admin token.", code="invalid_admin_token")
    if request.body_exists:  # small, and soon: a slow body holds no connection for long
        await read_small_body(request, settings.header_timeout_s)
    try:
        return await handler(request)
    except accounts.NotFound as exc:
        raise GatewayError(404, str(exc), code="not_found") from exc
    except Conflict as exc:
        raise GatewayError(409, str(exc), code="conflict") from exc
    except accounts.Revoked as exc:
        raise GatewayError(409, str(exc), code="key_revoked") from exc
    except accounts.HasLiveKeys as exc:
        raise GatewayError(409, str(exc), code="team_has_live_keys") from exc


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


async def create_team(request: web.Request) -> web.Response:
    store = request.config_dict[SERVICES].store
    spec = await _parse(request, accounts.TeamCreate)
    team = await accounts.create_team(store, spec, actor=actor(request))
    return _json(await accounts.team_view_now(store, team), status=201)


async def list_teams(request: web.Request) -> web.Response:
    store = request.config_dict[SERVICES].store
    return _json(
        {"data": [await accounts.team_view_now(store, t) for t in await store.list_teams()]}
    )


async def get_team(request: web.Request) -> web.Response:
    store = request.config_dict[SERVICES].store
    team = await accounts.get_team(store, request.match_info["name"])
    return _json(await accounts.team_view_now(store, team))


async def patch_team(request: web.Request) -> web.Response:
    store = request.config_dict[SERVICES].store
    changes = await _parse(request, accounts.TeamLimits)
    team = await accounts.update_team(
        store, request.match_info["name"], changes, actor=actor(request)
    )
    return _json(await accounts.team_view_now(store, team))


async def delete_team(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    force = request.query.get("force", "").lower() in ("1", "true", "yes")
    store = request.config_dict[SERVICES].store
    revoked = await accounts.delete_team(store, name, force=force, actor=actor(request))
    return _json({"deleted": name, "revoked_keys": revoked})


async def create_key(request: web.Request) -> web.Response:
    store = request.config_dict[SERVICES].store
    spec = await _parse(request, accounts.KeyCreate)
    issued = await accounts.create_key(store, spec, actor=actor(request))
    view = await accounts.key_view_now(store, issued.record)
    return _json({**view, "key": issued.secret}, status=201)


async def list_keys(request: web.Request) -> web.Response:
    store = request.config_dict[SERVICES].store
    keys = await accounts.list_keys(store, request.query.get("team"))
    return _json({"data": [await accounts.key_view_now(store, key) for key in keys]})


async def get_key(request: web.Request) -> web.Response:
    store = request.config_dict[SERVICES].store
    key = await accounts.get_key(store, request.match_info["id"])
    return _json(await accounts.key_view_now(store, key))


async def patch_key(request: web.Request) -> web.Response:
    store = request.config_dict[SERVICES].store
    changes = await _parse(request, accounts.KeyPatch)
    key = await accounts.update_key(store, request.match_info["id"], changes, actor=actor(request))
    return _json(await accounts.key_view_now(store, key))


async def revoke_key(request: web.Request) -> web.Response:
    store = request.config_dict[SERVICES].store
    key = await accounts.revoke_key(store, request.match_info["id"], actor=actor(request))
    return _json(await accounts.key_view_now(store, key))


async def rotate_key(request: web.Request) -> web.Response:
    store = request.config_dict[SERVICES].store
    issued = await accounts.rotate_key(store, request.match_info["id"], actor=actor(request))
    view = await accounts.key_view_now(store, issued.record)
    return _json({**view, "key": issued.secret})


async def usage(request: web.Request) -> web.Response:
    query = request.query
    output = query.get("format", "json")
    if output not in ("json", "csv"):
        raise invalid_request("'format' must be json or csv.", code="invalid_value", param="format")
    report = await usage_report(
        request.config_dict[SERVICES].store,
        team=query.get("team"),
        key=query.get("key"),
        model=query.get("model"),
        since=query.get("since"),
        until=query.get("until"),
        group_by=query.get("group_by", "team"),
        tag=query.get("tag"),
        user=query.get("user"),
    )
    if output == "csv":
        return web.Response(text=report.as_csv(), content_type="text/csv")
    return _json(report.as_json())


class CachePurge(BaseModel):
    """What to purge: a team's entries, a key's, or (neither given) every entry."""

    model_config = ConfigDict(extra="forbid")
    team: accounts.Text | None = None
    key: accounts.Text | None = None


async def cache_stats(request: web.Request) -> web.Response:
    return _json(await request.config_dict[SERVICES].cache.stats())


async def cache_purge(request: web.Request) -> web.Response:
    spec = await _parse(request, CachePurge)
    services = request.config_dict[SERVICES]
    purged = await accounts.purge_cache(
        services.store, services.cache, team=spec.team, key=spec.key, actor=actor(request)
    )
    return _json({"purged": purged})


async def reconcile_view(request: web.Request) -> web.Response:
    """`GET /admin/reconcile?since=DAY&until=DAY&tolerance=USD`: the ledger beside upstream's
    Costs API, per day and model; the differences count in gateway_reconcile_differences."""
    query = request.query
    since = query.get("since")
    if not since:
        raise invalid_request(
            "Missing required parameter: 'since'.", code="missing_required_parameter", param="since"
        )
    try:
        tolerance = Decimal(query.get("tolerance", "0.01"))
    except ArithmeticError:
        tolerance = Decimal(-1)
    if not tolerance.is_finite() or tolerance < 0:
        raise invalid_request(
            "'tolerance' is USD, 0 or more.", code="invalid_value", param="tolerance"
        )
    services = request.config_dict[SERVICES]
    result = await reconcile(
        services.settings, services.store, since, query.get("until"), tolerance
    )
    services.metrics.reconcile_differences.set(
        len(result["differences"]) + len(result["image_differences"])
    )
    return _json(result)


async def audit_log(request: web.Request) -> web.Response:
    """`GET /admin/audit?limit=&action=&target=`: the newest changes first."""
    raw = request.query.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
        raise invalid_request(
            "'limit' must be from 1 to 10000.", code="invalid_value", param="limit"
        )
    entries = await request.config_dict[SERVICES].store.audit_entries(
        int(raw), request.query.get("action"), request.query.get("target")
    )
    return _json({"data": [audit.entry_view(entry) for entry in entries]})


def create_admin_app() -> web.Application:
    admin = web.Application(middlewares=[require_admin_token])
    admin.router.add_post("/teams", create_team)
    admin.router.add_get("/teams", list_teams)
    admin.router.add_get("/teams/{name}", get_team)
    admin.router.add_patch("/teams/{name}", patch_team)
    admin.router.add_delete("/teams/{name}", delete_team)
    admin.router.add_post("/keys", create_key)
    admin.router.add_get("/keys", list_keys)
    admin.router.add_get("/keys/{id}", get_key)
    admin.router.add_patch("/keys/{id}", patch_key)
    admin.router.add_delete("/keys/{id}", revoke_key)
    admin.router.add_post("/keys/{id}/rotate", rotate_key)
    admin.router.add_get("/usage", usage)
    admin.router.add_get("/audit", audit_log)
    admin.router.add_get("/reconcile", reconcile_view)
    webhooks.add_routes(admin)
    admin.router.add_get("/cache/stats", cache_stats)
    admin.router.add_post("/cache/purge", cache_purge)
    return admin
