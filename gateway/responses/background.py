"""Responses the gateway relayed, remembered as their team's; background ones tracked until they
end, then charged.

`record_response` is an ending step (proxy/pipeline.py): a response upstream made is recorded
with its team, and a background one still running has its hold handed over to the store, owned
by no process, until `settle_response` writes its ledger row (named by the request that made
it, so the row settles that hold) when housekeeping, or a client's retrieve, finds it ended.

What holds: each background response is charged once (its row's request id is unique), from its
own usage, however many replicas or restarts ask; a hold whose response was never found ended
within GATEWAY_BACKGROUND_HOLD_S is charged as orphaned (the estimate), never dropped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import secrets
import time
from typing import Any

from gateway.accounting.chargeback import charged
from gateway.accounting.journal import this_process
from gateway.accounting.periods import Periods
from gateway.errors import GatewayError
from gateway.outcome import CacheStatus, Outcome
from gateway.pricing import NO_USAGE
from gateway.proxy.flow import Flow
from gateway.responses.charge import charge_parts
from gateway.responses.reading import count_image_calls, image_usage, text_usage
from gateway.runtime.services import Services
from gateway.store.base import LedgerRow
from gateway.store.records import ResponseRecord, Team

log = logging.getLogger(__name__)

ENDED = frozenset({"completed", "failed", "incomplete", "cancelled"})
LEASE_S = 60.0
ROUND_LIMIT = 20
POLL_S = 10.0  # a background response is asked about at most this often by housekeeping


async def record_response(flow: Flow, error: BaseException | None) -> None:
    """The response upstream made is its team's; a background one still running keeps its hold,
    handed over to the store."""
    ask, caller, answer = flow.ask, flow.caller, flow.answer
    if ask is None or caller is None or answer.response_id is None or answer.served is not None:
        return
    store, settings = flow.services.store, flow.services.settings
    record = ResponseRecord(
        id=answer.response_id,
        team_id=caller.team.id,
        key_id=caller.key.id,
        request_id=flow.request_id,
        created_at=int(time.time()),
        background=answer.pending,
        status=answer.response_status or "unknown",
        model=ask.model,
        image_model=ask.image_model,
        estimate_nanos=flow.bill.estimate_nanos,
        text_estimate_nanos=flow.bill.estimate_nanos - flow.bill.image_each_nanos * flow.n,
        image_each_nanos=flow.bill.image_each_nanos,
        reservation_id=flow.bill.reservation_id,
        settled_at=None if answer.pending else int(time.time()),
    )
    await store.add_response(record)
    if answer.pending and flow.bill.reservation_id is not None:
        await store.hand_over_hold(
            flow.bill.reservation_id, time.time() + settings.background_hold_s
        )


async def settle_response(services: Services, response_id: str, owner: str) -> bool:
    """Charge a background response that has ended upstream, if this attempt gets its lease;
    whether it was charged now."""
    store = services.store
    owner = f"{owner}:{secrets.token_hex(4)}"
    if not await store.lease_response(response_id, owner, time.time(), LEASE_S):
        return False
    try:
        record = await store.get_response(response_id, None)
        if record is None or record.settled_at is not None:
            return False
        answer = await _upstream_response(services, response_id)
        status = str(answer.get("status"))
        if status not in ENDED:
            await store.update_response(response_id, status=status, polled_at=time.time(),
                                        lease_owner=None)  # fmt: skip
            return False
        key = await store.get_key(record.key_id)
        team = await store.get_team(key.team_name) if key is not None else None
        await store.record(_row(services, record, answer, team))
        await store.update_response(response_id, status=status, settled_at=int(time.time()),
                                    lease_owner=None)  # fmt: skip
        return True
    except BaseException:
        with contextlib.suppress(Exception):
            await store.update_response(response_id, lease_owner=None)
        raise


async def _upstream_response(services: Services, response_id: str) -> dict[str, Any]:
    response = await services.upstream.send("GET", f"responses/{response_id}", {}, None, 0)
    try:
        body = await response.read()
        if response.status != 200:
            raise GatewayError(502, f"upstream answered {response.status} for a background"
                               " response", type="upstream_error")  # fmt: skip
    finally:
        response.release()
    document = json.loads(body)
    if not isinstance(document, dict):
        raise GatewayError(502, "upstream's response is not an object", type="upstream_error")
    return document


def _row(
    services: Services, record: ResponseRecord, answer: dict[str, Any], team: Team | None
) -> LedgerRow:
    """The ledger row of a background response that has ended, from its own usage."""
    table = services.prices.table
    text_price, image_price = table.lookup(record.model), table.lookup(record.image_model)
    text, image = text_usage(answer.get("usage")), image_usage(answer.get("tool_usage"))
    images = count_image_calls(json.dumps(answer.get("output") or []).encode())
    if text_price is None or image_price is None:  # the table changed since: its estimate
        cost = record.estimate_nanos
        text_nanos, image_nanos, missing = cost, 0, True
    else:
        parts = charge_parts(
            text_price, image_price, text, image, images,
            text_estimate_nanos=record.text_estimate_nanos,
            image_each_nanos=record.image_each_nanos,
        )  # fmt: skip
        text_nanos, image_nanos, missing = parts.text_nanos, parts.image_nanos, parts.usage_missing
    now = dt.datetime.now(dt.UTC)
    periods = Periods.at(now)
    used = image or NO_USAGE  # the token columns hold the image tool's, as for images
    status = str(answer.get("status"))
    outcome = Outcome.USAGE_MISSING if missing else Outcome.OK
    if status == "failed" and not missing:
        outcome = Outcome.UPSTREAM_ERROR
    return LedgerRow(
        request_id=record.request_id,
        created_at=now.isoformat(timespec="milliseconds"),
        day=periods.day,
        week=periods.week,
        month=periods.month,
        key_id=record.key_id,
        team_id=record.team_id,
        endpoint="responses",
        model=record.image_model,
        size=None,
        quality=None,
        n=None,
        stream=False,
        status=200,
        outcome=outcome.value,
        cache_status=CacheStatus.BYPASS.value,
        text_input_tokens=used.text_input,
        cached_text_input_tokens=used.cached_text_input,
        image_input_tokens=used.image_input,
        cached_image_input_tokens=used.cached_image_input,
        image_output_tokens=used.image_output,
        text_output_tokens=used.text_output,
        images=images,
        estimate_nanos=record.estimate_nanos,
        cost_nanos=charged(team, text_nanos + image_nanos),
        upstream_cost_nanos=text_nanos + image_nanos,
        saved_nanos=0,
        latency_ms=0.0,
        upstream_request_id=None,
        price_version=table.version,
        reservation_id=record.reservation_id,
        error_code=f"background_{status}" if status != "completed" else None,
        response_id=record.id,
        text_model=record.model,
        text_cost_nanos=text_nanos,
        image_cost_nanos=image_nanos,
    )


async def poll_responses(services: Services) -> int:
    """One housekeeping round: background responses due are asked about, and charged if they
    ended. How many were charged."""
    store, now = services.store, time.time()
    charged = 0
    for response_id in await store.responses_to_poll(now - POLL_S, ROUND_LIMIT):
        try:
            charged += await settle_response(services, response_id, this_process())
        except GatewayError as exc:
            log.warning("background response %s not polled: %s", response_id, exc.message)
            await store.update_response(response_id, polled_at=now)
    return charged
