"""Reconciliation with the invoice: the ledger's upstream cost and images, per day and model,
beside what upstream's organization Costs API (`/v1/organization/costs`) and Usage API for
images (`/v1/organization/usage/images`), read with GATEWAY_UPSTREAM_ADMIN_KEY, say it billed and
made.

The ledger's side counts what went upstream: every row but the cache's answers (`hit`,
`coalesced`), a response's image part under its image model and its text part under its text
model. Upstream's side is each daily bucket's `amount.value` by `line_item` (the model; text
after a comma, such as ", input", is dropped). A difference beyond the tolerance is reported;
`gateway reconcile` exits 1 when there is one, and `GET /admin/reconcile` sets the
`gateway_reconcile_differences` gauge.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp

from gateway.errors import GatewayError, invalid_request
from gateway.money import NANOS_PER_USD
from gateway.settings import Settings
from gateway.store import Store

MAX_PAGES = 100


@dataclass(frozen=True, slots=True)
class Difference:
    day: str
    model: str
    ledger_usd: Decimal
    upstream_usd: Decimal

    def view(self) -> dict[str, str]:
        return {
            "day": self.day,
            "model": self.model,
            "ledger_usd": str(self.ledger_usd),
            "upstream_usd": str(self.upstream_usd),
            "difference_usd": str(self.ledger_usd - self.upstream_usd),
        }


def days(since: str, until: str | None) -> tuple[dt.date, dt.date]:
    """The range [since, until) of whole UTC days; until defaults to tomorrow."""
    try:
        first = dt.date.fromisoformat(since)
        last = dt.date.fromisoformat(until) if until else dt.datetime.now(dt.UTC).date()
        last = last if until else last + dt.timedelta(days=1)
    except ValueError:
        raise invalid_request(
            "'since' and 'until' are days: YYYY-MM-DD.", code="invalid_value", param="since"
        ) from None
    if first >= last:
        raise invalid_request(
            "'since' must come before 'until'.", code="invalid_value", param="until"
        )
    return first, last


async def upstream_costs(
    settings: Settings, first: dt.date, last: dt.date
) -> dict[tuple[str, str], Decimal]:
    """USD per (day, model) from the Costs API."""
    found: dict[tuple[str, str], Decimal] = {}
    for day, result in await _buckets(settings, "costs", "line_item", first, last):
        model = str(result.get("line_item") or "(none)").split(",")[0].strip()
        value = Decimal(str((result.get("amount") or {}).get("value") or 0))
        found[(day, model)] = found.get((day, model), Decimal(0)) + value
    return found


async def upstream_images(
    settings: Settings, first: dt.date, last: dt.date
) -> dict[tuple[str, str], int]:
    """Images per (day, model) from the Usage API for images."""
    found: dict[tuple[str, str], int] = {}
    for day, result in await _buckets(settings, "usage/images", "model", first, last):
        model = str(result.get("model") or "(none)")
        found[(day, model)] = found.get((day, model), 0) + int(result.get("images") or 0)
    return found


async def _buckets(
    settings: Settings, what: str, group_by: str, first: dt.date, last: dt.date
) -> list[tuple[str, dict[str, Any]]]:
    """(day, result) of every daily bucket of /organization/<what>, page after page."""
    key = settings.upstream_admin_key
    if key is None:
        raise GatewayError(
            400,
            "Reconciliation reads upstream's Costs and Usage APIs with an admin key:"
            " set GATEWAY_UPSTREAM_ADMIN_KEY.",
            code="admin_key_missing",
        )
    start = int(dt.datetime.combine(first, dt.time(), dt.UTC).timestamp())
    end = int(dt.datetime.combine(last, dt.time(), dt.UTC).timestamp())
    url = settings.upstream_url.rstrip("/") + f"/organization/{what}"
    params: dict[str, Any] = {
        "start_time": start,
        "end_time": end,
        "bucket_width": "1d",
        "group_by": group_by,
        "limit": 180,
    }
    found: list[tuple[str, dict[str, Any]]] = []
    headers = {"Authorization": f"Bearer {key.get_secret_value()}"}
    timeout = aiohttp.ClientTimeout(total=settings.upstream_read_timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for _ in range(MAX_PAGES):
            async with session.get(url, params=params, headers=headers) as answer:
                text = await answer.text()
                if answer.status != 200:
                    raise GatewayError(
                        502,
                        f"upstream's /organization/{what} answered {answer.status}.",
                        type="upstream_error",
                        code="costs_unavailable",
                    )
            page = json.loads(text, parse_float=Decimal)
            for bucket in page.get("data") or []:
                day = dt.datetime.fromtimestamp(int(bucket["start_time"]), dt.UTC).date()
                found += [(day.isoformat(), result) for result in bucket.get("results") or []]
            if not page.get("has_more") or not page.get("next_page"):
                break
            params["page"] = page["next_page"]
    return found


async def ledger_costs(
    store: Store, first: dt.date, last: dt.date
) -> dict[tuple[str, str], Decimal]:
    rows = await store.upstream_cost_by_day(first.isoformat(), last.isoformat())
    found: dict[tuple[str, str], Decimal] = {}
    for day, model, nanos in rows:
        spot = (day, model)
        found[spot] = found.get(spot, Decimal(0)) + Decimal(int(nanos)) / NANOS_PER_USD
    return found


async def reconcile(
    settings: Settings, store: Store, since: str, until: str | None, tolerance: Decimal
) -> dict[str, Any]:
    first, last = days(since, until)
    upstream = await upstream_costs(settings, first, last)
    ledger = await ledger_costs(store, first, last)
    made = await upstream_images(settings, first, last)
    counted = {
        (day, model): int(images)
        for day, model, images in await store.upstream_images_by_day(
            first.isoformat(), last.isoformat()
        )
    }
    image_differences = [
        {
            "day": day,
            "model": model,
            "ledger_images": counted.get((day, model), 0),
            "upstream_images": made.get((day, model), 0),
        }
        for day, model in sorted(set(made) | set(counted))
        if counted.get((day, model), 0) != made.get((day, model), 0)
    ]
    spots = sorted(set(upstream) | set(ledger))
    differences = [
        Difference(
            day, model, ledger.get((day, model), Decimal(0)), upstream.get((day, model), Decimal(0))
        )
        for day, model in spots
        if abs(ledger.get((day, model), Decimal(0)) - upstream.get((day, model), Decimal(0)))
        > tolerance
    ]
    return {
        "since": first.isoformat(),
        "until": last.isoformat(),
        "tolerance_usd": str(tolerance),
        "compared": len(spots),
        "ledger_usd": str(sum(ledger.values(), Decimal(0))),
        "upstream_usd": str(sum(upstream.values(), Decimal(0))),
        "differences": [d.view() for d in differences],
        "image_differences": image_differences,
    }
