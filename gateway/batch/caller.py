"""Who calls the Files and Batches routes: a gateway key and its team, checked as on every
`/v1/images/*` request (rate limits aside: batch work is not per-minute traffic)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from gateway.edge.auth import authenticate
from gateway.errors import invalid_request
from gateway.runtime.state import SERVICES
from gateway.store import ApiKey, Team


@dataclass(frozen=True, slots=True)
class Caller:
    key: ApiKey
    team: Team


async def caller_of(request: web.Request) -> Caller:
    """The caller, or a 401 for a missing, unknown or revoked key."""
    key, team = await authenticate(
        request.app[SERVICES].store, request.headers.get("Authorization")
    )
    return Caller(key, team)


def page_size(request: web.Request, *, default: int, most: int) -> int:
    """The `limit` query parameter: 1 to `most`."""
    raw = request.query.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise invalid_request(
            f"'limit' must be a whole number from 1 to {most}.", code="invalid_value", param="limit"
        )
    return int(raw)
