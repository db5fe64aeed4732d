"""Accounting's stages before upstream: estimate, admit against rate limits, hold against
budgets.

What holds: a request that reaches upstream has a hold (a reservation) in the store for an upper
bound of its cost on every budget that applies, written before anything goes upstream; a hold is
written even where no budget applies, so that a crash always leaves a record to settle.
"""

from __future__ import annotations

import datetime as dt
import logging

from gateway.accounting.chargeback import charged
from gateway.accounting.journal import this_process
from gateway.accounting.periods import Periods
from gateway.accounting.quota import budget_exhausted, limits_for
from gateway.accounting.quote import json_input_images, quote
from gateway.edge.imageinfo import image_dimensions
from gateway.errors import GatewayError
from gateway.outcome import Outcome
from gateway.pricing import (
    Usage,
)
from gateway.proxy.flow import Flow
from gateway.store.base import Hold

log = logging.getLogger(__name__)


def _input_images(flow: Flow) -> list[tuple[int, int] | None]:
    """Dimensions of the edit's input images, read from their file headers (None if unknown)."""
    body = flow.body
    assert body is not None
    if body.json is None:
        return [image_dimensions(f.head) for f in body.files if f.field in ("image", "image[]")]
    return json_input_images(flow.params)


async def estimate_cost(flow: Flow) -> None:
    """`flow.bill.estimate_nanos` is an upper bound of the cost in the usual case, and
    `flow.bill.price` the model's prices (`flow.bill.svg_author` the SVG author's). A model with
    no price is refused unless the config allows it; an SVG author with no price is refused
    always (quote.py: the same rules for every door)."""
    parsed = flow.parsed
    if not flow.endpoint.known or flow.model is None or parsed is None:
        return
    table = flow.services.prices.table
    flow.bill.price_version = table.version
    images = _input_images(flow) if flow.endpoint.name != "generations" else []
    allow_unpriced = flow.services.settings.allow_unpriced_models
    quoted = quote(table, flow.endpoint.name, parsed, images, allow_unpriced=allow_unpriced)
    if quoted is None:
        return
    flow.bill.price, flow.bill.svg_author = quoted.price, quoted.svg_author
    flow.bill.estimate_nanos = quoted.estimate.nanos
    flow.bill.svg_estimate_nanos = quoted.estimate.svg_nanos
    assumed = quoted.estimate.usage
    flow.bill.estimate_input = Usage(assumed.text_input, 0, assumed.image_input, 0, 0, 0)


async def check_rate_limits(flow: Flow) -> None:
    """The request fits every rpm and ipm limit of its key and team, and is counted in them."""
    assert flow.caller is not None
    limits = limits_for(flow.caller.key, flow.caller.team, images=flow.n)
    if limits:
        headers = await flow.services.limiter.admit(limits, flow.request_id)
        flow.rate_headers.update(headers)


def hold_for(flow: Flow) -> Hold:
    """The request's hold: its estimate, in what the team is charged, named by the request
    (should the client leave while it is made, the hold is made all the same, and the
    request's ledger row, written on its way out, settles it by name)."""
    assert flow.caller is not None
    key, team = flow.caller.key, flow.caller.team
    now = dt.datetime.now(dt.UTC)
    return Hold(
        key_id=key.id,
        team_id=team.id,
        amount_nanos=charged(team, flow.bill.estimate_nanos),
        periods=Periods.at(now),
        now=now.timestamp(),
        ttl_s=flow.services.settings.reservation_ttl_s,
        request_id=flow.request_id,
        owner=this_process(),
        endpoint=flow.endpoint.name,
        model=flow.model,
    )


async def reserve_budget(flow: Flow) -> None:
    """The request's hold is in the store before anything goes upstream: the estimate, held
    against the key's and the team's budgets (or a 429 says which one cannot pay). A hold is
    written even where no budget applies, so that a crash always leaves a record to settle as
    `orphaned`; a store that cannot take it refuses the request (503 `storage_unavailable`).
    A miss's hold may have been made with its cache lookup (serve_from_cache): then it is kept."""
    if flow.bill.reservation_id is not None:
        return
    assert flow.caller is not None
    key, team = flow.caller.key, flow.caller.team
    services = flow.services
    store = services.store
    hold = hold_for(flow)
    # A store that cannot take it raises: the pipeline answers 503 before anything went upstream.
    flow.bill.reservation_id = await store.reserve(**hold.terms())
    services.health.store_wrote()
    if flow.bill.reservation_id is not None:
        return
    amount, periods, now = hold.amount_nanos, hold.periods, hold.now
    for scope, scope_id, name in (("key", key.id, key.id), ("team", str(team.id), team.name)):
        spend = await store.spend(scope, scope_id, periods, now)
        remaining = spend.remaining_nanos
        if remaining is not None and remaining < amount:
            at = dt.datetime.fromtimestamp(now, dt.UTC)
            raise budget_exhausted(scope, name, spend, amount, at, lowering_hint(flow))
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
    if flow.ask is not None:
        unset = " (unset: the model's most)" if flow.ask.max_output_tokens is None else ""
        return (
            f" The estimate is lower with a smaller `max_output_tokens`{unset}, fewer images"
            " (`max_tool_calls`), or a smaller image `size` or `quality`."
        )
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
