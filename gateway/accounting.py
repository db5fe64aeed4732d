"""Accounting stages: estimate, admit against rate limits, reserve against budgets, and settle.

What holds: a request that reaches upstream has a reservation for an upper bound of its cost on
every budget that applies; every authenticated request ends with exactly one ledger row, and that
row (one statement) releases the reservation and counts the actual cost. A successful response's
row is committed before the response's last byte leaves.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import time
from typing import Any

from gateway.errors import GatewayError, invalid_request
from gateway.flow import SERVED_BY_CACHE, Flow
from gateway.imageinfo import image_dimensions
from gateway.money import nanos_to_usd
from gateway.periods import Periods
from gateway.pricing import EstimateRequest, Usage, estimate, per_image_cost_nanos, usage_cost_nanos
from gateway.quota import budget_exhausted, limits_for
from gateway.state import PRICES, RATE_LIMITER, SETTINGS, STORE
from gateway.store.base import LedgerRow

PARTIAL_IMAGE_TOKENS = 100  # each partial image costs 100 image output tokens (image guide)
NO_USAGE = Usage(0, 0, 0, 0, 0, 0)


def _int_param(flow: Flow, name: str, default: int) -> int:
    value = flow.params.get(name, default)
    if value is None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if isinstance(value, bool) or number < 0 or (isinstance(value, float) and value != number):
        raise invalid_request(
            f"'{name}' must be a non-negative integer.", code="invalid_value", param=name
        )
    return number


def _text_param(flow: Flow, name: str) -> str | None:
    value = flow.params.get(name)
    return value if isinstance(value, str) else None


def _input_images(flow: Flow) -> list[tuple[int, int] | None]:
    """Dimensions of the edit's input images, read from their file headers (None if unknown)."""
    body = flow.body
    assert body is not None
    if body.json is None:
        return [image_dimensions(f.head) for f in body.files if f.field in ("image", "image[]")]
    images = flow.params.get("images")
    if not isinstance(images, list):
        return []
    return [_data_url_dimensions(item) for item in images]


def _data_url_dimensions(item: Any) -> tuple[int, int] | None:
    url = item.get("image_url") if isinstance(item, dict) else None
    if not isinstance(url, str) or not url.startswith("data:") or "," not in url:
        return None
    encoded = url.split(",", 1)[1][:4096]
    try:
        return image_dimensions(base64.b64decode(encoded[: len(encoded) // 4 * 4]))
    except (binascii.Error, ValueError):
        return None


async def estimate_cost(flow: Flow) -> None:
    """`flow.estimate_nanos` is an upper bound of the cost in the usual case, and `flow.price`
    the model's prices. A model with no price is refused unless the config allows it."""
    if not flow.endpoint.known or flow.model is None:
        return
    app = flow.request.app
    flow.price_version = app[PRICES].table.version
    flow.price = app[PRICES].table.lookup(flow.model)
    flow.n = _int_param(flow, "n", 1)
    if flow.price is None:
        if not app[SETTINGS].allow_unpriced_models:
            raise invalid_request(
                f"The model {flow.model!r} has no price in this gateway's price table, so its"
                " cost cannot be charged. Ask the operator to add it to the price table.",
                code="model_not_priced",
                param="model",
            )
        return
    request = EstimateRequest(
        model=flow.model,
        endpoint=flow.endpoint.name,
        size=_text_param(flow, "size"),
        quality=_text_param(flow, "quality"),
        n=flow.n,
        partial_images=_int_param(flow, "partial_images", 0),
        stream=flow.stream,
        prompt=_text_param(flow, "prompt") or "",
        input_images=_input_images(flow) if flow.endpoint.name != "generations" else [],
        input_fidelity=_text_param(flow, "input_fidelity"),
    )
    flow.estimate_nanos = estimate(flow.price, request).nanos


async def check_rate_limits(flow: Flow) -> None:
    """The request fits every rpm and ipm limit of its key and team, and is counted in them."""
    assert flow.key is not None and flow.team is not None
    limits = limits_for(flow.key, flow.team, images=flow.n)
    if limits:
        headers = flow.request.app[RATE_LIMITER].admit(limits, time.monotonic())
        flow.response_headers.update(headers)


async def reserve_budget(flow: Flow) -> None:
    """The estimate is held against the key's and the team's budgets (or a 429 says which one
    cannot pay)."""
    key, team = flow.key, flow.team
    assert key is not None and team is not None
    if key.budget_nanos is None and team.budget_nanos is None:
        return  # nothing to hold against; the ledger row still counts the spend
    store = flow.request.app[STORE]
    now = dt.datetime.now(dt.UTC)
    periods = Periods.at(now)
    flow.reservation_id = await store.reserve(
        key_id=key.id,
        team_id=team.id,
        amount_nanos=flow.estimate_nanos,
        periods=periods,
        now=now.timestamp(),
        ttl_s=flow.request.app[SETTINGS].reservation_ttl_s,
    )
    if flow.reservation_id is not None:
        return
    flow.outcome = "refused_budget"
    for scope, scope_id, name in (("key", key.id, key.id), ("team", str(team.id), team.name)):
        spend = await store.spend(scope, scope_id, periods, now.timestamp())
        remaining = spend.remaining_nanos
        if remaining is not None and remaining < flow.estimate_nanos:
            raise budget_exhausted(scope, name, spend, flow.estimate_nanos, now)
    # The budget freed up between the check and the explanation: refuse anyway, plainly.
    raise GatewayError(
        429,
        "The budget cannot pay for this request right now.",
        type="insufficient_quota",
        code="insufficient_quota",
        headers={"x-should-retry": "false"},
    )


def actual_cost(flow: Flow) -> int:
    """What upstream produced, at the model's prices (0 when nothing was produced)."""
    price = flow.price
    if price is None or flow.status != 200 or flow.cache_status in SERVED_BY_CACHE:
        return 0
    if price.per_image_billing:
        return per_image_cost_nanos(
            price, _text_param(flow, "size"), _text_param(flow, "quality"), flow.images
        )
    if flow.usage is not None:
        return usage_cost_nanos(price, flow.usage)
    # A stream cut before its completed event: charge the partial images that arrived.
    partial = Usage(0, 0, 0, 0, flow.partial_images_seen * PARTIAL_IMAGE_TOKENS, 0)
    return usage_cost_nanos(price, partial)


def outcome_of(error: BaseException | None, flow: Flow) -> tuple[int, str]:
    """The status and outcome the ledger records; a request that ended by an exception says
    which (the client's own status is what it was told, or would have been)."""
    if error is None:
        return flow.status, flow.outcome
    if isinstance(error, GatewayError):
        outcomes = {"insufficient_quota": "refused_budget", "rate_limit_exceeded": "refused_rate"}
        return error.status, outcomes.get(error.code or "", error.code or "refused")
    if isinstance(error, asyncio.CancelledError):
        return 499, "client_gone"  # the client left before the upstream call began
    return flow.status or 500, "error"


async def record(flow: Flow, error: BaseException | None = None) -> None:
    """Write the request's one ledger row (settling its reservation). Idempotent."""
    if flow.recorded or flow.key is None or flow.team is None:
        return
    flow.recorded = True
    flow.status, flow.outcome = outcome_of(error, flow)
    flow.cost_nanos = actual_cost(flow)
    usage = flow.usage or NO_USAGE
    now = dt.datetime.now(dt.UTC)
    periods = Periods.at(now)
    row = LedgerRow(
        request_id=flow.request_id,
        created_at=now.isoformat(timespec="milliseconds"),
        day=periods.day,
        week=periods.week,
        month=periods.month,
        key_id=flow.key.id,
        team_id=flow.team.id,
        endpoint=flow.endpoint.name,
        model=flow.model,
        size=_text_param(flow, "size"),
        quality=_text_param(flow, "quality"),
        n=flow.n,
        stream=flow.stream,
        status=flow.status,
        outcome=flow.outcome,
        cache_status=flow.cache_status,
        text_input_tokens=usage.text_input,
        cached_text_input_tokens=usage.cached_text_input,
        image_input_tokens=usage.image_input,
        cached_image_input_tokens=usage.cached_image_input,
        image_output_tokens=usage.image_output,
        text_output_tokens=usage.text_output,
        images=flow.images,
        estimate_nanos=flow.estimate_nanos,
        cost_nanos=flow.cost_nanos,
        saved_nanos=flow.saved_nanos,
        latency_ms=round((time.perf_counter() - flow.started) * 1000, 3),
        upstream_request_id=flow.upstream_request_id,
        price_version=flow.price_version,
        reservation_id=flow.reservation_id,
    )
    await flow.request.app[STORE].record(row)


def cost_header(flow: Flow) -> str:
    return nanos_to_usd(flow.cost_nanos)
