"""The web console, `/console`: spend, budgets, keys, usage, images, prices and the cache, served
by the gateway itself from templates and static files shipped in the package (no build step).

What holds:
- It is on only when `GATEWAY_ADMIN_TOKEN` is set; otherwise every page says how to turn it on.
- Nothing but the sign-in page and the static files opens without a session (session.py): a
  page redirects to sign-in, anything else is 401. Every POST carries the session's CSRF token.
- Pages read and change through the same functions as the admin API and the CLI (pages.py).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from gateway.admin.guard import client_address, is_secure, read_small_body, trusted_networks
from gateway.console import pages
from gateway.console.session import (
    CSRF_FIELD,
    SESSION,
    SESSION_S,
    Session,
    csrf_passes,
    end_session,
    read_session,
    same_origin,
    start_session,
)
from gateway.console.thumbnails import Thumbnails
from gateway.runtime.state import SERVICES

STATIC = Path(__file__).parent / "static"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPEN_PATHS = ("/console/login", "/console/static/")


def _admin_token(request: web.Request) -> str | None:
    token = request.config_dict[SERVICES].settings.admin_token
    return token.get_secret_value() if token is not None and token.get_secret_value() else None


@web.middleware
async def console_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Off without an admin token; a session for everything but sign-in and static files; the
    CSRF token on every POST; no page kept by a shared cache."""
    token = _admin_token(request)
    if token is None:
        return aiohttp_jinja2.render_template("off.html", request, {}, status=403)
    services = request.config_dict[SERVICES]
    if request.method == "POST":  # read whole, small and soon, before anything else reads it
        await read_small_body(request, services.settings.header_timeout_s)
    session = read_session(request, token)
    if session is not None and await services.store.console_session_ended(session.sid):
        session = None  # signed out (perhaps on another replica)
    if session is None and not request.path.startswith(OPEN_PATHS):
        if request.method == "GET" and "HX-Request" not in request.headers:
            raise web.HTTPSeeOther(request.app.router["login"].url_for())
        raise web.HTTPUnauthorized(text="Sign in to the console first.")
    if session is not None:
        request[SESSION] = session
        if request.method == "POST":
            form = await request.post()
            submitted = form.get(CSRF_FIELD)
            if not csrf_passes(request, session, submitted if isinstance(submitted, str) else None):
                raise web.HTTPForbidden(text="The form's CSRF token is missing or wrong.")
    response = await handler(request)
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline';"
        " frame-ancestors 'none'; form-action 'self'"
    )
    return response


async def login_page(request: web.Request) -> web.StreamResponse:
    if SESSION in request:
        raise web.HTTPSeeOther(request.app.router["overview"].url_for())
    return aiohttp_jinja2.render_template("login.html", request, {"page": "login"})


async def login(request: web.Request) -> web.StreamResponse:
    """Sign in with the admin token: from this site only (Origin), and at most MAX_FAILURES
    wrong tries a minute from one address."""
    services = request.config_dict[SERVICES]
    trusted = trusted_networks(services.settings.trusted_proxies)
    address = client_address(request, trusted)
    services.auth_throttle.check(address)
    if not same_origin(request):
        raise web.HTTPForbidden(text="Sign in from the console's own page.")
    form = await request.post()
    given = str(form.get("token", ""))
    token = _admin_token(request)
    assert token is not None  # the guard let us in
    if not hmac.compare_digest(given.encode(), token.encode()):
        services.auth_throttle.failed(address, "console")
        context = {"page": "login", "error": "That is not the admin token."}
        return aiohttp_jinja2.render_template("login.html", request, context, status=401)
    response = web.HTTPSeeOther(request.app.router["overview"].url_for())
    start_session(response, token, secure=is_secure(request, trusted))
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    """The session ends here and on every replica (its id is remembered until it expires)."""
    session = request.get(SESSION)
    if isinstance(session, Session):
        now = time.time()
        store = request.config_dict[SERVICES].store
        await store.end_console_session(session.sid, until=now + SESSION_S, now=now)
    response = web.HTTPSeeOther(request.app.router["login"].url_for())
    end_session(response)
    raise response


async def _context(request: web.Request) -> dict[str, Any]:
    """What every template may use: the session's CSRF token and the app's routes."""
    session = request.get(SESSION)
    return {"csrf": getattr(session, "csrf", ""), "csrf_field": CSRF_FIELD,
            "signed_in": session is not None}  # fmt: skip


def _template(name: str, view: Callable[..., Awaitable[dict[str, Any]]]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return aiohttp_jinja2.render_template(name, request, await view(request))

    return handler


def create_console_app() -> web.Application:
    console = web.Application(middlewares=[console_guard])
    aiohttp_jinja2.setup(
        console,
        loader=jinja2.PackageLoader("gateway.console", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        context_processors=[_context, aiohttp_jinja2.request_processor],
    )
    aiohttp_jinja2.get_env(console).filters["when"] = pages.when
    console[pages.THUMBNAILS] = Thumbnails()
    add = console.router
    add.add_get("/login", login_page, name="login")
    add.add_post("/login", login)
    add.add_post("/logout", logout, name="logout")
    add.add_get("/", _template("overview.html", pages.overview), name="overview")
    add.add_get("/teams", _template("teams.html", pages.teams), name="teams")
    add.add_post("/teams", pages.save_team, name="create_team")
    add.add_post("/teams/{name}", pages.save_team, name="edit_team")
    add.add_get("/keys", _template("keys.html", pages.keys), name="keys")
    add.add_post("/keys", pages.create_key, name="create_key")
    add.add_post("/keys/{id}/revoke", pages.revoke_key, name="revoke_key")
    add.add_post("/keys/{id}/rotate", pages.rotate_key, name="rotate_key")
    add.add_get("/usage", _template("usage.html", pages.usage), name="usage")
    add.add_get("/usage.csv", pages.usage_csv, name="usage_csv")
    add.add_get("/images", _template("images.html", pages.images), name="images")
    add.add_get("/images/{key}", _template("image.html", pages.image_details), name="image")
    add.add_get("/images/{key}/thumbnail.png", pages.thumbnail, name="thumbnail")
    add.add_get("/images/{key}/full", pages.full_image, name="full_image")
    add.add_get("/prices", _template("prices.html", pages.prices), name="prices")
    add.add_get("/batches", _template("batches.html", pages.batches), name="batches")
    add.add_get("/alerts", _template("alerts.html", pages.alerts), name="alerts")
    add.add_get("/audit", _template("audit.html", pages.audit_page), name="audit")
    add.add_get("/cache", _template("cache.html", pages.cache), name="cache")
    add.add_post("/cache/purge", pages.purge_cache, name="purge_cache")
    add.add_static("/static", STATIC, name="static")
    return console
