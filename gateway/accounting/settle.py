"""The request's result, computed once when it ends: its status and outcome, and what it is
charged for what upstream produced (`close_the_books`, the ending's first step). The ledger row,
the writer's cost header, the metrics and the log line all read that one result.

What holds: a request is never $0 by accident (a 200 whose usage cannot be read is charged its
estimate, an upper bound, and marked `usage_missing`); an answer served by the cache costs
nothing; no charge exceeds MAX_REQUEST_NANOS, nor any usage count MAX_TOKENS (the row is flagged
`usage_out_of_range` instead).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from gateway.accounting.chargeback import charged
from gateway.errors import GatewayError
from gateway.money import MAX_REQUEST_NANOS, nanos_to_usd
from gateway.outcome import Outcome
from gateway.pricing import (
    NO_USAGE,
    PARTIAL_IMAGE_TOKENS,
    ModelPrice,
    PriceTable,
    SvgUsage,
    Usage,
    per_image_cost_nanos,
    usage_cost_nanos,
)
from gateway.proxy.flow import Flow, Result
from gateway.responses.charge import response_charge

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Charge:
    """What a request is charged, and whether part of it is the estimate standing in for usage
    upstream did not report (`usage_missing`)."""

    nanos: int
    usage_missing: bool = False
    # A response's two parts (they add up to nanos): the text model's, the image tool's.
    text_nanos: int | None = None
    image_nanos: int | None = None


def outcome_of(flow: Flow, error: BaseException | None) -> tuple[int, Outcome]:
    """The status and outcome a request ended with; a request that ended by an exception says
    which (the client's own status is what it was told, or would have been)."""
    answer = flow.answer
    if error is None:
        if answer.outcome is Outcome.OK and answer.status >= 400:
            return answer.status, Outcome.UPSTREAM_ERROR  # upstream's own error, passed on
        return answer.status, answer.outcome
    if isinstance(error, GatewayError):
        return error.status, error.outcome
    if isinstance(error, asyncio.CancelledError):
        return 499, Outcome.CLIENT_GONE  # the client left before the upstream call began
    return answer.status or 500, Outcome.ERROR


def charge_for(
    flow: Flow, status: int, outcome: Outcome, usage: Usage | None, svg: SvgUsage | None
) -> Charge:
    """What upstream produced, at the model's prices (0 when nothing was produced), given the
    request's `status` and `outcome` and the `usage` it reported (bounded).

    A per-image model answering with token usage is charged at token prices (the dearest image
    model the table knows, as the table cannot know which answered)."""
    bill, answer = flow.bill, flow.answer
    price = bill.price
    if price is None or status != 200 or answer.served is not None:
        return Charge(0)
    if answer.abandoned:  # no longer read: upstream may finish it all the same
        read = 0 if usage is None or price.per_image_billing else usage_cost_nanos(price, usage)
        return Charge(max(bill.estimate_nanos, read))
    if flow.stream and usage is None and answer.images == 0:
        if outcome is Outcome.UPSTREAM_ERROR:
            return Charge(0)  # an error event without usage: upstream charges nothing
        if outcome is Outcome.STREAM_CUT and not price.per_image_billing:
            # Cut before any usage came: the input as the request holds it (upstream read it),
            # and the partial images that arrived.
            given = bill.estimate_input or NO_USAGE
            partials = answer.partial_images_pending * PARTIAL_IMAGE_TOKENS
            return Charge(usage_cost_nanos(price, given.plus_output(partials)))
    if price.per_image_billing and usage is None:
        parsed = flow.parsed
        size, quality = (parsed.size, parsed.quality) if parsed else (None, None)
        return Charge(per_image_cost_nanos(price, size, quality, answer.images))
    if usage is None:
        return Charge(bill.estimate_nanos, usage_missing=True)
    table: PriceTable = flow.services.prices.table
    token_price = price
    if price.per_image_billing:
        log.warning("per-image model %r answered with token usage", price.name)
        dearest = table.dearest_image_model()
        if dearest is None:  # a table of per-image models only: the upper bound it has
            return Charge(bill.estimate_nanos, usage_missing=True)
        token_price = dearest
    if answer.partial_images_pending:  # a cut stream: partial images after its last completed
        usage = usage.plus_output(answer.partial_images_pending * PARTIAL_IMAGE_TOKENS)
    nanos, missing = usage_cost_nanos(token_price, usage), False
    if bill.svg_author is not None:
        svg_nanos = _svg_cost(table, svg)
        missing = svg_nanos is None
        nanos += bill.svg_estimate_nanos if svg_nanos is None else svg_nanos
    return Charge(nanos, usage_missing=missing)


def _response_charge(flow: Flow, status: int, outcome: Outcome) -> Charge:
    """A Responses request's charge: its text model's part and its image tool's."""
    parts = response_charge(flow, status, outcome)
    return Charge(parts.nanos, parts.usage_missing, parts.text_nanos, parts.image_nanos)


def _svg_cost(table: PriceTable, svg: SvgUsage | None) -> int | None:
    """The SVG author's charge from `svg_usage`, or None when it cannot be read or priced."""
    if svg is None:
        return None
    author: ModelPrice | None = table.lookup(svg.model)
    if author is None or not author.text_only:
        log.warning("svg_usage names a model the price table cannot charge: %r", svg.model)
        return None
    return usage_cost_nanos(author, svg.as_usage())


async def close_the_books(flow: Flow, error: BaseException | None) -> None:
    """`flow.result` is final: status, outcome, error code, cache status and charge."""
    status, outcome = outcome_of(flow, error)
    error_code = error.code if isinstance(error, GatewayError) else None
    answer = flow.answer
    usage, svg, out_of_range = answer.usage, answer.svg_usage, False
    if usage is not None:
        usage, out_of_range = usage.bounded()
    if svg is not None:
        svg, svg_cut = svg.bounded()
        out_of_range = out_of_range or svg_cut
    if flow.ask is not None:
        charge = _response_charge(flow, status, outcome)
    else:
        charge = charge_for(flow, status, outcome, usage, svg)
    if charge.nanos > MAX_REQUEST_NANOS:
        charge, out_of_range = Charge(MAX_REQUEST_NANOS, charge.usage_missing), True
        if flow.ask is not None:  # the image part takes what the bound leaves
            text = min(charge.text_nanos or 0, MAX_REQUEST_NANOS)
            charge = Charge(MAX_REQUEST_NANOS, charge.usage_missing, text, MAX_REQUEST_NANOS - text)
    if out_of_range:
        error_code = error_code or "usage_out_of_range"
        flow.services.metrics.usage_out_of_range.labels(flow.model or "").inc()
        log.error(
            "request %s: upstream reported usage past what one request may be charged; charged"
            " the bound, $%s, and flagged the row usage_out_of_range",
            flow.request_id,
            nanos_to_usd(charge.nanos),
        )
    if charge.usage_missing and outcome is Outcome.OK:
        outcome = Outcome.USAGE_MISSING
        log.warning(
            "request %s: upstream answered 200 without usage the gateway can read; charged the"
            " estimate, $%s",
            flow.request_id,
            nanos_to_usd(charge.nanos),
        )
    served = flow.cache_status
    flow.result = Result(
        status=status,
        outcome=outcome,
        error_code=error_code,
        cache_status=served,
        cost_nanos=charged(flow.caller.team if flow.caller else None, charge.nanos),
        upstream_cost_nanos=charge.nanos,
        saved_nanos=answer.saved_nanos,
        usage=usage,
        svg_usage=svg,
        images=answer.images,
        text_cost_nanos=charge.text_nanos,
        image_cost_nanos=charge.image_nanos,
    )
