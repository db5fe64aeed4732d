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
import logging
import time
from dataclasses import dataclass
from typing import Any

from gateway.errors import GatewayError, invalid_request
from gateway.flow import Flow
from gateway.imageinfo import image_dimensions
from gateway.journal import this_process
from gateway.money import MAX_REQUEST_NANOS, nanos_to_usd
from gateway.outcome import Outcome
from gateway.params import is_valid_unicode
from gateway.periods import Periods
from gateway.pricing import (
    PARTIAL_IMAGE_TOKENS,
    EstimateRequest,
    ModelPrice,
    PriceTable,
    Usage,
    estimate,
    per_image_cost_nanos,
    usage_cost_nanos,
)
from gateway.quota import budget_exhausted, limits_for
from gateway.store.base import LedgerRow
from gateway.store.failures import describe

log = logging.getLogger(__name__)
NO_USAGE = Usage(0, 0, 0, 0, 0, 0)


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
        flow.result.response_headers.update(headers)


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


@dataclass(frozen=True, slots=True)
class Charge:
    """What a request is charged, and whether part of it is the estimate standing in for usage
    upstream did not report (`usage_missing`)."""

    nanos: int
    usage_missing: bool = False


def charge_for(flow: Flow) -> Charge:
    """What upstream produced, at the model's prices (0 when nothing was produced).

    Never $0 by accident: a 200 whose usage cannot be read is charged the estimate (an upper
    bound), and marked so; a per-image model answering with token usage is charged at token
    prices (the dearest image model the table knows, as the table cannot know which answered)."""
    price = flow.bill.price
    if price is None or flow.result.status != 200 or flow.result.cache_status.served_by_cache:
        return Charge(0)
    if flow.bill.abandoned:  # no longer read: upstream may finish it all the same
        return Charge(max(flow.bill.estimate_nanos, _read_so_far(flow, price)))
    if flow.stream and flow.bill.usage is None and flow.bill.images == 0:
        if flow.result.outcome is Outcome.UPSTREAM_ERROR:
            return Charge(0)  # an error event without usage: upstream charges nothing
        if flow.result.outcome is Outcome.STREAM_CUT and not price.per_image_billing:
            # Cut before any usage came: the input as the request holds it (upstream read it),
            # and the partial images that arrived.
            given = flow.bill.estimate_input or NO_USAGE
            partials = flow.bill.partial_images_pending * PARTIAL_IMAGE_TOKENS
            return Charge(usage_cost_nanos(price, given.plus_output(partials)))
    if price.per_image_billing and flow.bill.usage is None:
        parsed = flow.parsed
        size, quality = (parsed.size, parsed.quality) if parsed else (None, None)
        return Charge(per_image_cost_nanos(price, size, quality, flow.bill.images))
    if flow.bill.usage is None:
        return Charge(flow.bill.estimate_nanos, usage_missing=True)
    token_price = price
    if price.per_image_billing:
        log.warning("per-image model %r answered with token usage", price.name)
        dearest = flow.services.prices.table.dearest_image_model()
        if dearest is None:  # a table of per-image models only: the upper bound it has
            return Charge(flow.bill.estimate_nanos, usage_missing=True)
        token_price = dearest
    usage = flow.bill.usage
    if flow.bill.partial_images_pending:  # a cut stream: partial images after its last completed
        usage = usage.plus_output(flow.bill.partial_images_pending * PARTIAL_IMAGE_TOKENS)
    nanos, missing = usage_cost_nanos(token_price, usage), False
    if flow.bill.svg_author is not None:
        svg_nanos = _svg_cost(flow)
        missing = svg_nanos is None
        nanos += flow.bill.svg_estimate_nanos if svg_nanos is None else svg_nanos
    return Charge(nanos, usage_missing=missing)


def _read_so_far(flow: Flow, price: ModelPrice) -> int:
    """The cost of the usage a stream reported before it stopped being read (0 without)."""
    if flow.bill.usage is None or price.per_image_billing:
        return 0
    return usage_cost_nanos(price, flow.bill.usage)


def _bound_usage(flow: Flow) -> bool:
    """Usage counts past MAX_TOKENS are cut to it (so the row and its cost can be stored);
    whether any was."""
    bill, cut = flow.bill, False
    if bill.usage is not None:
        bill.usage, cut = bill.usage.bounded()
    if bill.svg_usage is not None:
        bill.svg_usage, svg_cut = bill.svg_usage.bounded()
        cut = cut or svg_cut
    return cut


def _svg_cost(flow: Flow) -> int | None:
    """The SVG author's charge from `svg_usage`, or None when it cannot be read or priced."""
    svg = flow.bill.svg_usage
    if svg is None:
        return None
    author = flow.services.prices.table.lookup(svg.model)
    if author is None or not author.text_only:
        log.warning("svg_usage names a model the price table cannot charge: %r", svg.model)
        return None
    return usage_cost_nanos(author, svg.as_usage())


def outcome_of(error: BaseException | None, flow: Flow) -> tuple[int, Outcome]:
    """The status and outcome a request ended with; a request that ended by an exception says
    which (the client's own status is what it was told, or would have been)."""
    if error is None:
        if flow.result.outcome is Outcome.OK and flow.result.status >= 400:
            return (
                flow.result.status,
                Outcome.UPSTREAM_ERROR,
            )  # upstream's own error, passed through
        return flow.result.status, flow.result.outcome
    if isinstance(error, GatewayError):
        return error.status, error.outcome
    if isinstance(error, asyncio.CancelledError):
        return 499, Outcome.CLIENT_GONE  # the client left before the upstream call began
    return flow.result.status or 500, Outcome.ERROR


def settle_outcome(flow: Flow, error: BaseException | None) -> None:
    """`flow.result.status`, `flow.result.outcome` and `flow.result.error_code` are final."""
    flow.result.status, flow.result.outcome = outcome_of(error, flow)
    if isinstance(error, GatewayError):
        flow.result.error_code = error.code


async def record(flow: Flow, error: BaseException | None = None) -> None:
    """Write the request's one ledger row (settling its reservation). Idempotent."""
    caller = flow.caller
    if flow.bill.recorded or caller is None:
        return
    flow.bill.recorded = True
    settle_outcome(flow, error)
    out_of_range = _bound_usage(flow)
    charge = charge_for(flow)
    if charge.nanos > MAX_REQUEST_NANOS:
        charge, out_of_range = Charge(MAX_REQUEST_NANOS, charge.usage_missing), True
    flow.bill.cost_nanos = charge.nanos
    if out_of_range:
        flow.result.error_code = flow.result.error_code or "usage_out_of_range"
        flow.services.metrics.usage_out_of_range.labels(flow.model or "").inc()
        log.error(
            "request %s: upstream reported usage past what one request may be charged; charged"
            " the bound, $%s, and flagged the row usage_out_of_range",
            flow.request_id,
            nanos_to_usd(flow.bill.cost_nanos),
        )
    if charge.usage_missing and flow.result.outcome is Outcome.OK:
        flow.result.outcome = Outcome.USAGE_MISSING
        log.warning(
            "request %s: upstream answered 200 without usage the gateway can read; charged the"
            " estimate, $%s",
            flow.request_id,
            nanos_to_usd(flow.bill.cost_nanos),
        )
    usage = flow.bill.usage or NO_USAGE
    now = dt.datetime.now(dt.UTC)
    periods = Periods.at(now)
    row = LedgerRow(
        request_id=flow.request_id,
        created_at=now.isoformat(timespec="milliseconds"),
        day=periods.day,
        week=periods.week,
        month=periods.month,
        key_id=caller.key.id,
        team_id=caller.team.id,
        endpoint=flow.endpoint.name,
        model=flow.model,
        size=flow.parsed.size if flow.parsed else None,
        quality=flow.parsed.quality if flow.parsed else None,
        n=flow.n,
        stream=flow.stream,
        status=flow.result.status,
        outcome=flow.result.outcome.value,
        cache_status=flow.result.cache_status.value,
        text_input_tokens=usage.text_input,
        cached_text_input_tokens=usage.cached_text_input,
        image_input_tokens=usage.image_input,
        cached_image_input_tokens=usage.cached_image_input,
        image_output_tokens=usage.image_output,
        text_output_tokens=usage.text_output,
        images=flow.bill.images,
        estimate_nanos=flow.bill.estimate_nanos,
        cost_nanos=flow.bill.cost_nanos,
        saved_nanos=flow.bill.saved_nanos,
        latency_ms=round((time.perf_counter() - flow.timings.started) * 1000, 3),
        # Upstream's header may hold bytes that are not UTF-8: stored escaped, never failing.
        upstream_request_id=storable(flow.upstream_request_id),
        price_version=flow.bill.price_version,
        reservation_id=flow.bill.reservation_id,
        error_code=flow.result.error_code,
    )
    services = flow.services
    try:
        await services.store.record(row)
    except Exception as exc:
        # The client's answer does not change: the row waits in the journal for the store.
        services.health.store_failed(exc)
        log.error(
            "ledger write failed for %s (%s); the row goes to the journal",
            row.request_id,
            describe(exc),
        )
        try:
            await services.journal.append(row)
        except Exception as journal_exc:
            services.health.journal_failed(journal_exc)
            log.critical("ledger row LOST (journal failed too): %r", row, exc_info=True)
            return
        services.health.journal_wrote()
        services.metrics.ledger_journaled.inc()
    else:
        services.health.store_wrote()


def storable(text: str | None) -> str | None:
    """`text` as the store can hold it: valid UTF-8 (anything else backslash-escaped)."""
    if text is None or is_valid_unicode(text):
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def cost_header(flow: Flow) -> str:
    return nanos_to_usd(flow.bill.cost_nanos)
