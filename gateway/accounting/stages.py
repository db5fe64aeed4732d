"""Accounting's stages before upstream: estimate, admit against rate limits, hold against
budgets.

What holds: a request that reaches upstream has a hold (a reservation) in the store for an upper
bound of its cost on every budget that applies, written before anything goes upstream; a hold is
written even where no budget applies, so that a crash always leaves a record to settle.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
from typing import Any

from gateway.accounting.journal import this_process
from gateway.accounting.periods import Periods
from gateway.accounting.quota import budget_exhausted, limits_for
from gateway.edge.imageinfo import image_dimensions
from gateway.errors import GatewayError, invalid_request
from gateway.money import MAX_REQUEST_NANOS, nanos_to_usd
from gateway.outcome import Outcome
from gateway.pricing import (
    EstimateRequest,
    ModelPrice,
    PriceTable,
    Usage,
    estimate,
)
from gateway.proxy.flow import Flow

log = logging.getLogger(__name__)


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
    """`flow.bill.estimate_nanos` is an upper bound of the cost in the usual case, and
    `flow.bill.price` the model's prices (`flow.bill.svg_author` the SVG author's). A model with
    no price is refused unless the config allows it; an SVG author with no price is refused
    always."""
    parsed = flow.parsed
    if not flow.endpoint.known or flow.model is None or parsed is None:
        return
    table = flow.services.prices.table
    flow.bill.price_version = table.version
    flow.bill.price = table.lookup(flow.model)
    if flow.bill.price is not None and flow.bill.price.text_only:
        raise invalid_request(
            f"The model {flow.model!r} is a text model: it can author SVG output (svg.model),"
            " not make images.",
            code="invalid_value",
            param="model",
        )
    if flow.bill.price is None:
        if not flow.services.settings.allow_unpriced_models:
            raise model_not_priced(flow.model, "model")
        return
    if parsed.output_format == "svg" and not flow.bill.price.per_image_billing:
        flow.bill.svg_author = _svg_author(table, parsed.svg_model)
    request = EstimateRequest(
        model=flow.model,
        endpoint=flow.endpoint.name,
        size=parsed.size,
        quality=parsed.quality,
        n=flow.n,
        partial_images=parsed.partial_images,
        stream=flow.stream,
        prompt=parsed.prompt,
        input_images=_input_images(flow) if flow.endpoint.name != "generations" else [],
        input_fidelity=parsed.input_fidelity,
        output_format=parsed.output_format,
        frame_count=parsed.frame_count,
        complexity=parsed.complexity,
    )
    estimated = estimate(flow.bill.price, request, flow.bill.svg_author)
    if estimated.nanos > MAX_REQUEST_NANOS:
        raise invalid_request(
            f"This request is estimated at ${nanos_to_usd(estimated.nanos)}, more than the"
            f" ${nanos_to_usd(MAX_REQUEST_NANOS)} one request may cost here. Ask for a smaller"
            " `size`, a lower `quality` or fewer images (`n`).",
            code="estimate_out_of_range",
        )
    flow.bill.estimate_nanos = estimated.nanos
    flow.bill.svg_estimate_nanos = estimated.svg_nanos
    assumed = estimated.usage
    flow.bill.estimate_input = Usage(assumed.text_input, 0, assumed.image_input, 0, 0, 0)


def _svg_author(table: PriceTable, name: str | None) -> ModelPrice:
    """The text model that will author an SVG: the one named, which must be priced; when none
    is named (upstream picks), the dearest text model the table knows, for an upper bound."""
    if name is not None:
        author = table.lookup(name)
        if author is None or not author.text_only:
            raise model_not_priced(name, "svg.model")
        return author
    author = table.dearest_text_model()
    if author is None:
        raise invalid_request(
            "SVG output is authored by a text model, and this gateway's price table has none, so"
            " its cost cannot be charged. Ask the operator to add one to the price table.",
            code="model_not_priced",
            param="svg.model",
        )
    return author


def model_not_priced(model: str, param: str) -> GatewayError:
    return invalid_request(
        f"The model {model!r} has no price in this gateway's price table, so its cost cannot be"
        " charged. Ask the operator to add it to the price table.",
        code="model_not_priced",
        param=param,
    )


async def check_rate_limits(flow: Flow) -> None:
    """The request fits every rpm and ipm limit of its key and team, and is counted in them."""
    assert flow.caller is not None
    limits = limits_for(flow.caller.key, flow.caller.team, images=flow.n)
    if limits:
        headers = await flow.services.limiter.admit(limits, flow.request_id)
        flow.rate_headers.update(headers)


async def reserve_budget(flow: Flow) -> None:
    """The request's hold is in the store before anything goes upstream: the estimate, held
    against the key's and the team's budgets (or a 429 says which one cannot pay). A hold is
    written even where no budget applies, so that a crash always leaves a record to settle as
    `orphaned`; a store that cannot take it refuses the request (503 `storage_unavailable`)."""
    assert flow.caller is not None
    key, team = flow.caller.key, flow.caller.team
    services = flow.services
    store = services.store
    now = dt.datetime.now(dt.UTC)
    periods = Periods.at(now)
    # A store that cannot take it raises: the pipeline answers 503 before anything went upstream.
    flow.bill.reservation_id = await store.reserve(
        key_id=key.id,
        team_id=team.id,
        amount_nanos=flow.bill.estimate_nanos,
        periods=periods,
        now=now.timestamp(),
        ttl_s=services.settings.reservation_ttl_s,
        # Named by its request: should the client leave while this runs, the hold is made all
        # the same, and the request's ledger row (written on its way out) settles it by name.
        request_id=flow.request_id,
        owner=this_process(),
        endpoint=flow.endpoint.name,
        model=flow.model,
    )
    services.health.store_wrote()
    if flow.bill.reservation_id is not None:
        return
    for scope, scope_id, name in (("key", key.id, key.id), ("team", str(team.id), team.name)):
        spend = await store.spend(scope, scope_id, periods, now.timestamp())
        remaining = spend.remaining_nanos
        if remaining is not None and remaining < flow.bill.estimate_nanos:
            raise budget_exhausted(
                scope, name, spend, flow.bill.estimate_nanos, now, lowering_hint(flow)
            )
    # The budget freed up between the check and the explanation: refuse anyway, plainly.
    raise GatewayError(
        429,
        "The budget cannot pay for this request right now.",
        type="insufficient_quota",
        code="insufficient_quota",
        headers={"x-should-retry": "false"},
        outcome=Outcome.REFUSED_BUDGET,
    )


def lowering_hint(flow: Flow) -> str:
    """Which of the request's fields would lower its estimate, as a sentence (or nothing)."""
    parsed = flow.parsed
    if parsed is None:
        return ""
    ways = [
        "naming a `size` (unset or auto is estimated at the largest auto can pick)"
        if parsed.size in (None, "auto")
        else "a smaller `size`"
    ]
    if parsed.quality != "low":
        ways.append("a lower `quality`")
    if parsed.n > 1:
        ways.append("fewer images (`n`)")
    listed = ", ".join(ways[:-1]) + " or " + ways[-1] if len(ways) > 1 else ways[0]
    return f" The estimate is lower with {listed}."
