"""The console's pages and forms. Each reads and changes through the functions the admin API and
the CLI use (accounts, the usage report, the cache, the price table): no SQL of its own.

Forms post back and redirect (POST/redirect/GET); with htmx's boost the same happens without a
full page load. A form that fails is shown again with the reason, and nothing changes.
"""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from PIL import UnidentifiedImageError
from pydantic import BaseModel, ValidationError

import gateway.console.figures as figures
from gateway.accounting.usage_report import GROUPS, usage_report
from gateway.admin import accounts, audit
from gateway.alerts.thresholds import thresholds_of
from gateway.batch.batches import present
from gateway.console.session import SESSION
from gateway.console.side_by_side import side_by_side
from gateway.console.thumbnails import CachedImage, first_image, media_type
from gateway.edge.auth import IssuedKey
from gateway.errors import GatewayError
from gateway.money import nanos_to_usd
from gateway.pricing import describe
from gateway.runtime.state import SERVICES
from gateway.store.base import CacheEntry, Conflict

IMAGES_PER_TEAM = 12
WARN_AT, DANGER_AT = Decimal("0.80"), Decimal("0.95")


def _services(request: web.Request) -> Any:
    return request.config_dict[SERVICES]


def when(value: object) -> str:
    """A stored moment (ISO 8601 text, or unix seconds) as people read it: `2026-12-06 14:05
    UTC`; anything else as it is."""
    if isinstance(value, int | float):
        moment = dt.datetime.fromtimestamp(value, dt.UTC)
    else:
        try:
            moment = dt.datetime.fromisoformat(str(value))
        except ValueError:
            return str(value or "")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _actor(request: web.Request) -> str:
    """Who makes a change through the console, for the audit trail."""
    session = request.get(SESSION)
    sid = getattr(session, "sid", "")
    return f"console (session {sid[:8]}, {request.remote or 'unknown'})"


def budget_bar(view: dict[str, Any]) -> dict[str, Any] | None:
    """How full a budget is: spent and held as shares of it, and its level (ok, warning past
    80%, danger past 95%). None without a budget."""
    if view["budget_usd"] is None:
        return None
    budget = Decimal(view["budget_usd"])
    spent, held = Decimal(view["spent_usd"]), Decimal(view["reserved_usd"])
    used = (spent + held) / budget if budget else Decimal(1)
    level = "danger" if used > DANGER_AT else "warning" if used > WARN_AT else "ok"
    return {
        "spent_pct": min(100, round(spent / budget * 100, 1)) if budget else 100,
        "held_pct": min(100, round(held / budget * 100, 1)) if budget else 0,
        "used_pct": round(used * 100, 1),
        "level": level,
    }


async def _form(request: web.Request) -> dict[str, str]:
    """The posted form's text fields (a console form has no files)."""
    return {k: v for k, v in (await request.post()).items() if isinstance(v, str)}


def _form_errors(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"{where}: {first['msg']}" if where else first["msg"]
    return str(exc)


def _limits(form: dict[str, str], model: type[BaseModel], **extra: Any) -> Any:
    """A Limits model from a form: empty fields are left out (on an edit: unchanged), except
    where `clear_<field>` is checked (cleared)."""
    fields: dict[str, Any] = dict(extra)
    for name in ("budget_usd", "budget_period", "rpm", "ipm", "name"):
        value = form.get(name, "").strip()
        if form.get(f"clear_{name}"):
            fields[name] = None
        elif value:
            fields[name] = value
    return model.model_validate(fields)


async def overview(request: web.Request) -> dict[str, Any]:
    services = _services(request)
    in_flight, streams_open = services.metrics.open_now()
    return {
        "page": "overview",
        "figures": await figures.overview(services.store, dt.datetime.now(dt.UTC)),
        "in_flight": in_flight,
        "streams_open": streams_open,
    }


async def teams(request: web.Request, error: str | None = None) -> dict[str, Any]:
    store = _services(request).store
    views = await side_by_side(
        accounts.team_view_now(store, team) for team in await store.list_teams()
    )
    now = dt.datetime.now(dt.UTC)
    for view in views:
        view["bar"] = budget_bar(view)
        view["renews_at"] = accounts.renews_at(view["budget_period"], now)
    return {"page": "teams", "teams": views, "error": error}


async def save_team(request: web.Request) -> web.StreamResponse:
    """Create a team (no `team` in the path) or change one's budget, period and limits."""
    form = await _form(request)
    store = _services(request).store
    name = request.match_info.get("name")
    try:
        if name is None:
            await accounts.create_team(
                store, _limits(form, accounts.TeamCreate), actor=_actor(request)
            )
        else:
            await accounts.update_team(
                store, name, _limits(form, accounts.TeamLimits), actor=_actor(request)
            )
    except (ValidationError, Conflict, accounts.NotFound) as exc:
        context = await teams(request, error=_form_errors(exc))
        return aiohttp_jinja2.render_template("teams.html", request, context, status=400)
    raise web.HTTPSeeOther(request.app.router["teams"].url_for())


async def keys(
    request: web.Request, error: str | None = None, issued: dict[str, str] | None = None
) -> dict[str, Any]:
    store = _services(request).store
    team = request.query.get("team") or None
    try:
        listed = await accounts.list_keys(store, team)
    except accounts.NotFound:
        listed, error = [], f"No team named {team!r}."
    views = await side_by_side(accounts.key_view_now(store, key) for key in listed)
    for view in views:
        view["bar"] = budget_bar(view)
    names = [t.name for t in await store.list_teams()]
    return {
        "page": "keys",
        "keys": views,
        "team": team,
        "teams": names,
        "error": error,
        "issued": issued,
    }


async def _issued(request: web.Request, issued: IssuedKey, what: str) -> web.Response:
    """The page that shows a new secret, once: never stored, never shown again."""
    context = await keys(
        request, issued={"secret": issued.secret, "what": what, "id": issued.record.id}
    )
    response = aiohttp_jinja2.render_template("keys.html", request, context)
    response.headers["Cache-Control"] = "no-store"
    return response


async def create_key(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    store = _services(request).store
    try:
        spec = _limits(form, accounts.KeyCreate, team=form.get("team", ""))
        issued = await accounts.create_key(store, spec, actor=_actor(request))
    except (ValidationError, accounts.NotFound, accounts.Revoked) as exc:
        context = await keys(request, error=_form_errors(exc))
        return aiohttp_jinja2.render_template("keys.html", request, context, status=400)
    return await _issued(request, issued, f"New key {issued.record.id} for {spec.team}")


async def rotate_key(request: web.Request) -> web.StreamResponse:
    try:
        issued = await accounts.rotate_key(
            _services(request).store, request.match_info["id"], actor=_actor(request)
        )
    except (accounts.NotFound, accounts.Revoked) as exc:
        context = await keys(request, error=str(exc))
        return aiohttp_jinja2.render_template("keys.html", request, context, status=400)
    return await _issued(request, issued, f"Key {issued.record.id} rotated: its new secret")


async def revoke_key(request: web.Request) -> web.StreamResponse:
    try:
        key = await accounts.revoke_key(
            _services(request).store, request.match_info["id"], actor=_actor(request)
        )
    except accounts.NotFound as exc:
        context = await keys(request, error=str(exc))
        return aiohttp_jinja2.render_template("keys.html", request, context, status=400)
    raise web.HTTPSeeOther(request.app.router["keys"].url_for().with_query(team=key.team_name))


def _usage_filters(request: web.Request) -> dict[str, str | None]:
    query = request.query
    names = ("team", "key", "model", "since", "until", "tag", "user")
    return {name: query.get(name) or None for name in names}


async def usage(request: web.Request) -> dict[str, Any]:
    filters = _usage_filters(request)
    group_by = request.query.get("group_by") or "team"
    error, report = None, None
    try:
        report = await usage_report(_services(request).store, group_by=group_by, **filters)
    except GatewayError as exc:
        error = exc.message
    csv_query = {k: v for k, v in {**filters, "group_by": group_by}.items() if v}
    return {
        "page": "usage",
        "filters": filters,
        "group_by": group_by,
        "groups": GROUPS,
        "report": report,
        "error": error,
        "points": [(str(row[group_by]), row["cost_usd"]) for row in report.rows] if report else [],
        "csv_url": request.app.router["usage_csv"].url_for().with_query(csv_query),
        "teams": [t.name for t in await _services(request).store.list_teams()],
    }


async def usage_csv(request: web.Request) -> web.Response:
    """The same CSV as `/admin/usage?format=csv` for the same filters."""
    report = await usage_report(
        _services(request).store,
        group_by=request.query.get("group_by") or "team",
        **_usage_filters(request),
    )
    return web.Response(
        text=report.as_csv(),
        content_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="usage.csv"'},
    )


async def images(request: web.Request) -> dict[str, Any]:
    """The newest cached images of each team (or of the one asked for)."""
    services = _services(request)
    store, now = services.store, time.time()
    wanted = request.query.get("team") or None
    listed = await store.list_teams()
    shown = [team for team in listed if wanted is None or team.name == wanted]
    newest = await side_by_side(store.cache.recent(t.id, IMAGES_PER_TEAM, now) for t in shown)
    by_team = []
    for team, entries in zip(shown, newest, strict=True):
        by_team.append(
            {
                "team": team.name,
                "entries": [
                    {
                        "key": entry.key,
                        "model": entry.model,
                        "endpoint": entry.endpoint,
                        "cost_usd": nanos_to_usd(entry.cost_nanos),
                        "saved_usd": nanos_to_usd(entry.cost_nanos * entry.hits),
                        "hits": entry.hits,
                        "created_at": dt.datetime.fromtimestamp(entry.created_at, dt.UTC).strftime(
                            "%Y-%m-%d %H:%M UTC"
                        ),
                    }
                    for entry in entries
                ],
            }
        )
    return {"page": "images", "by_team": by_team, "team": wanted, "teams": [t.name for t in listed]}


async def _cached_entry(request: web.Request) -> CacheEntry:
    key, store = request.match_info["key"], _services(request).store
    entry: CacheEntry | None = await store.cache.get(key, time.time())
    if entry is None:
        raise web.HTTPNotFound(text="no such cached image")
    return entry


async def _image_in(request: web.Request, entry: CacheEntry) -> CachedImage:
    body = await _services(request).cache.read_whole(entry)
    found = None if body is None else first_image(body, entry.content_type)
    if found is None:
        raise web.HTTPNotFound(text="this cached answer holds no image (URLs only, or gone)")
    return found


# What a thumbnail shows for an answer that holds no image to show (dall-e `url` answers, whose
# images live upstream for an hour; a body cut short): a labelled placeholder, never a broken
# image.
PLACEHOLDER = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="160" height="160" viewBox="0 0 160 160">'
    '<rect width="160" height="160" fill="#eef1f5"/><text x="80" y="76" font-family="sans-serif"'
    ' font-size="13" fill="#5a6573" text-anchor="middle">{first}</text><text x="80" y="96"'
    ' font-family="sans-serif" font-size="13" fill="#5a6573" text-anchor="middle">{second}'
    "</text></svg>"
)


def _placeholder(first: str, second: str) -> web.Response:
    svg = PLACEHOLDER.format(first=first, second=second)
    return web.Response(
        text=svg, content_type="image/svg+xml", headers={"Cache-Control": "private, max-age=300"}
    )


async def thumbnail(request: web.Request) -> web.Response:
    entry = await _cached_entry(request)
    thumbnails = request.app[THUMBNAILS]
    png = thumbnails.kept(entry.body_sha256)  # made before: the body is not read again
    if png is None:
        try:
            image = await _image_in(request, entry)
        except web.HTTPNotFound:
            return _placeholder("image by URL", "(not kept here)")
        try:
            png = await thumbnails.make(entry.body_sha256, image.png)
        except (UnidentifiedImageError, OSError, ValueError):  # not an image, or cut short
            return _placeholder("image cannot", "be read")
    return web.Response(
        body=png, content_type="image/png", headers={"Cache-Control": "private, max-age=86400"}
    )


async def full_image(request: web.Request) -> web.Response:
    found = await _image_in(request, await _cached_entry(request))
    return web.Response(
        body=found.png,
        content_type=media_type(found.png),
        headers={"Cache-Control": "private, max-age=3600"},
    )


async def image_details(request: web.Request) -> dict[str, Any]:
    found = await _image_in(request, await _cached_entry(request))
    return {
        "page": "images",
        "key": request.match_info["key"],
        "size": found.size,
        "quality": found.quality,
    }


async def prices(request: web.Request) -> dict[str, Any]:
    table = _services(request).prices.table
    return {"page": "prices", "version": table.version, "path": table.path, "rows": describe(table)}


async def batches(request: web.Request) -> dict[str, Any]:
    """Every team's batches (or one team's), newest first: status, lines, held and charged."""
    store = _services(request).store
    teams = {t.id: t.name for t in await store.list_teams()}
    wanted = request.query.get("team") or None
    team_id = next((i for i, name in teams.items() if name == wanted), None)
    found = [] if wanted and team_id is None else await store.list_batches(team_id, 200)
    rows = [
        {
            "id": b.id,
            "team": teams.get(b.team_id, str(b.team_id)),
            "key": b.key_id,
            "status": present(b)["status"],
            "endpoint": b.endpoint.rsplit("/", 1)[-1],
            "lines": b.lines,
            "cached": b.cached_lines,
            "completed": b.completed_lines,
            "failed": b.failed_lines,
            "held": nanos_to_usd(b.held_nanos),
            "charged": nanos_to_usd(b.charged_nanos) if b.settled_at else "",
            "saved": nanos_to_usd(b.saved_nanos) if b.settled_at else "",
            "created": dt.datetime.fromtimestamp(b.created_at, dt.UTC).strftime("%Y-%m-%d %H:%M"),
        }
        for b in found
    ]
    return {"page": "batches", "rows": rows, "teams": sorted(teams.values()), "team": wanted}


async def alerts(request: web.Request) -> dict[str, Any]:
    """Budget alerts: each webhook with its last deliveries, and each team's thresholds."""
    store = _services(request).store
    hooks = []
    for hook_id, url, events, _secret, created_at in await store.list_webhooks():
        rows = await store.deliveries(hook_id, 10)
        hooks.append(
            {
                "id": hook_id,
                "url": url,
                "events": events or "every event",
                "created_at": created_at,
                "deliveries": [
                    {
                        "event": r[0],
                        "status": r[2],
                        "attempts": r[3],
                        "last": r[5] or r[6] or "",
                        "type": r[8],
                    }
                    for r in rows
                ],
            }
        )
    teams = [
        {
            "name": t.name,
            "budget": nanos_to_usd(t.budget_nanos) if t.budget_nanos else None,
            "thresholds": ", ".join(
                f"{(x * 100).normalize():f}%" for x in thresholds_of(t.alert_thresholds)
            ),
        }
        for t in await store.list_teams()
    ]
    return {"page": "alerts", "hooks": hooks, "teams": teams}


async def audit_page(request: web.Request) -> dict[str, Any]:
    """The audit trail, newest first: who changed what, and the record before and after."""
    action = request.query.get("action") or None
    rows = await _services(request).store.audit_entries(200, action)
    entries = [
        {**entry, "before": _compact(entry["before"]), "after": _compact(entry["after"])}
        for entry in (audit.entry_view(row) for row in rows)
    ]
    return {"page": "audit", "entries": entries, "action": action}


def _compact(record: dict[str, Any] | None) -> str:
    if record is None:
        return ""
    return ", ".join(f"{k}: {v}" for k, v in record.items() if v not in (None, {}, []))


async def cache(request: web.Request, error: str | None = None) -> dict[str, Any]:
    services = _services(request)
    return {
        "page": "cache",
        "stats": await services.cache.stats(),
        "error": error,
        "purged": request.query.get("purged"),
        "teams": [t.name for t in await services.store.list_teams()],
    }


async def purge_cache(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    team = str(form.get("team") or "") or None
    key = str(form.get("key") or "") or None
    if form.get("confirm") != "yes":
        context = await cache(request, error="Tick the confirmation to purge.")
        return aiohttp_jinja2.render_template("cache.html", request, context, status=400)
    try:
        services = _services(request)
        purged = await accounts.purge_cache(
            services.store, services.cache, team=team, key=key, actor=_actor(request)
        )
    except accounts.NotFound as exc:
        context = await cache(request, error=str(exc))
        return aiohttp_jinja2.render_template("cache.html", request, context, status=400)
    url = request.app.router["cache"].url_for().with_query(purged=str(purged))
    raise web.HTTPSeeOther(url)


THUMBNAILS: web.AppKey[Any] = web.AppKey("console_thumbnails")
