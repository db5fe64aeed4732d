"""`/admin/webhooks`: where budget alerts go. `POST {url, events?, secret?}` (201, with the
secret, shown in full this once), `GET` (the secrets' first characters only), `DELETE /{id}`,
`GET /{id}/deliveries`.

What holds: a webhook URL is http(s) and, unless GATEWAY_WEBHOOK_ALLOW_PRIVATE, does not resolve
to a loopback, private, link-local or reserved address (the gateway would otherwise post to its
own network on an admin's say); every change is in the audit trail.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import secrets
import socket
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from yarl import URL

from gateway.admin import audit
from gateway.admin.requests import actor, parse_body
from gateway.errors import invalid_request, not_found
from gateway.runtime.state import SERVICES

EVENT_TYPES = ("budget.threshold", "budget.exhausted")


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000)
    events: list[str] | None = Field(default=None, max_length=len(EVENT_TYPES))
    secret: str | None = Field(default=None, min_length=16, max_length=200)


async def check_url(url: str, allow_private: bool) -> None:
    try:
        parsed = URL(url)
        fits = parsed.scheme in ("http", "https") and bool(parsed.host) and parsed.port
    except (ValueError, TypeError):
        fits = False
    if not fits:
        raise invalid_request(
            "'url' must be an http or https URL.", code="invalid_value", param="url"
        )
    if allow_private:
        return
    try:
        found = await asyncio.get_running_loop().getaddrinfo(
            parsed.host, parsed.port, type=socket.SOCK_STREAM
        )
    except (OSError, UnicodeError, ValueError):
        raise invalid_request(
            f"'url' names a host that does not resolve: {parsed.host}.",
            code="invalid_value",
            param="url",
        ) from None
    for *_, address in found:
        ip = ipaddress.ip_address(address[0])
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved:
            raise invalid_request(
                f"'url' resolves to {ip}, a private or loopback address; set"
                " GATEWAY_WEBHOOK_ALLOW_PRIVATE=true to allow it.",
                code="invalid_value",
                param="url",
            )


def _view(row: tuple[Any, ...], *, secret_whole: bool = False) -> dict[str, Any]:
    webhook_id, url, events, secret, created_at = row
    return {
        "id": webhook_id,
        "url": url,
        "events": json.loads(events) if events else list(EVENT_TYPES),
        "secret": secret if secret_whole else secret[:6] + "…",
        "created_at": created_at,
    }


async def create(request: web.Request) -> web.Response:
    services = request.config_dict[SERVICES]
    spec = await parse_body(request, WebhookCreate)
    unknown = set(spec.events or ()) - set(EVENT_TYPES)
    if unknown:
        raise invalid_request(
            f"Unknown event types: {sorted(unknown)}.", code="invalid_value", param="events"
        )
    await check_url(spec.url, services.settings.webhook_allow_private)
    webhook_id = f"wh_{secrets.token_hex(8)}"
    secret = spec.secret or f"whsec_{secrets.token_urlsafe(24)}"
    events = json.dumps(sorted(spec.events)) if spec.events else None
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    await services.store.add_webhook(webhook_id, spec.url, events, secret, now)
    row = (webhook_id, spec.url, events, secret, now)
    await audit.record(
        services.store, actor(request), "webhook.create", webhook_id, None, _view(row)
    )
    return web.json_response(_view(row, secret_whole=True), status=201)


async def list_webhooks(request: web.Request) -> web.Response:
    rows = await request.config_dict[SERVICES].store.list_webhooks()
    return web.json_response({"data": [_view(row) for row in rows]})


async def delete(request: web.Request) -> web.Response:
    store = request.config_dict[SERVICES].store
    webhook_id = request.match_info["id"]
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if not await store.delete_webhook(webhook_id, now):
        raise not_found("webhook", webhook_id)
    await audit.record(store, actor(request), "webhook.delete", webhook_id, None, None)
    return web.json_response({"id": webhook_id, "deleted": True})


async def deliveries(request: web.Request) -> web.Response:
    store = request.config_dict[SERVICES].store
    webhook_id = request.match_info["id"]
    if webhook_id not in {row[0] for row in await store.list_webhooks()}:
        raise not_found("webhook", webhook_id)
    rows = await store.deliveries(webhook_id, 100)
    keys = (
        "event_id",
        "webhook_id",
        "status",
        "attempts",
        "next_at",
        "last_status",
        "last_error",
        "delivered_at",
        "type",
        "created_at",
    )
    return web.json_response({"data": [dict(zip(keys, row, strict=True)) for row in rows]})


def add_routes(admin: web.Application) -> None:
    admin.router.add_post("/webhooks", create)
    admin.router.add_get("/webhooks", list_webhooks)
    admin.router.add_delete("/webhooks/{id}", delete)
    admin.router.add_get("/webhooks/{id}/deliveries", deliveries)
