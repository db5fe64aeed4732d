"""The result, computed once in the ending: status and outcome from what the source answered (or
the error), and the charge from what upstream produced. An independent check of the prices is in
tests/test_pricing.py; here the rules of which price applies to what, on make_flow."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.accounting.settle import close_the_books, outcome_of
from gateway.accounting.stages import estimate_cost
from gateway.errors import GatewayError, upstream_unreachable
from gateway.money import MAX_REQUEST_NANOS
from gateway.outcome import CacheStatus, Outcome
from gateway.pricing import Usage, usage_cost_nanos
from gateway.proxy import pipeline
from gateway.proxy.flow import Flow
from tests.factories import make_flow

BODY = {"model": "gpt-image-1", "prompt": "a kite", "size": "1024x1024", "quality": "low"}
USAGE = Usage(text_input=10, cached_text_input=0, image_input=0, cached_image_input=0,
              image_output=272, text_output=0)  # fmt: skip


async def estimated(tmp: Path, **body: object) -> Flow:
    """A flow read, inspected and estimated, as it is when it goes upstream."""
    flow = make_flow(tmp, json={**BODY, **body})
    await pipeline.read_request_body(flow)
    await pipeline.inspect_request(flow)
    await estimate_cost(flow)
    assert flow.bill.price is not None and flow.bill.estimate_nanos > 0
    return flow


def price_of(flow: Flow, usage: Usage) -> int:
    assert flow.bill.price is not None
    return usage_cost_nanos(flow.bill.price, usage)


async def test_an_answer_with_usage_is_charged_its_usage(tmp_path: Path) -> None:
    flow = await estimated(tmp_path)
    flow.answer.status, flow.answer.usage, flow.answer.images = 200, USAGE, 1
    await close_the_books(flow, None)
    result = flow.result
    assert (result.status, result.outcome, result.images) == (200, Outcome.OK, 1)
    assert result.cost_nanos == price_of(flow, USAGE) > 0
    assert result.cache_status is CacheStatus.BYPASS and result.error_code is None


async def test_a_200_without_usage_is_charged_its_estimate_and_marked(tmp_path: Path) -> None:
    flow = await estimated(tmp_path)
    flow.answer.status, flow.answer.images = 200, 1
    await close_the_books(flow, None)
    assert flow.result.outcome is Outcome.USAGE_MISSING
    assert flow.result.cost_nanos == flow.bill.estimate_nanos


async def test_what_the_cache_answered_costs_nothing_and_saves_its_price(tmp_path: Path) -> None:
    flow = await estimated(tmp_path)
    answer = flow.answer
    answer.status, answer.served, answer.saved_nanos, answer.images = 200, CacheStatus.HIT, 7, 1
    await close_the_books(flow, None)
    assert (flow.result.cost_nanos, flow.result.saved_nanos) == (0, 7)
    assert flow.result.cache_status is CacheStatus.HIT


async def test_upstreams_own_error_is_an_upstream_error_charged_nothing(tmp_path: Path) -> None:
    flow = await estimated(tmp_path)
    flow.answer.status = 400
    await close_the_books(flow, None)
    assert (flow.result.status, flow.result.outcome, flow.result.cost_nanos) == (
        400, Outcome.UPSTREAM_ERROR, 0)  # fmt: skip


async def test_a_stream_cut_before_any_usage_is_charged_its_input_and_partials(
    tmp_path: Path,
) -> None:
    flow = await estimated(tmp_path, stream=True, partial_images=2)
    answer = flow.answer
    answer.status, answer.outcome, answer.partial_images_pending = 200, Outcome.STREAM_CUT, 2
    await close_the_books(flow, None)
    assert flow.bill.estimate_input is not None
    owed = flow.bill.estimate_input.plus_output(2 * 100)  # PARTIAL_IMAGE_TOKENS each
    assert flow.result.outcome is Outcome.STREAM_CUT
    assert flow.result.cost_nanos == price_of(flow, owed) > 0


async def test_an_error_event_without_usage_is_charged_nothing(tmp_path: Path) -> None:
    flow = await estimated(tmp_path, stream=True)
    flow.answer.status, flow.answer.outcome = 200, Outcome.UPSTREAM_ERROR
    await close_the_books(flow, None)
    assert flow.result.cost_nanos == 0 and flow.result.outcome is Outcome.UPSTREAM_ERROR


async def test_an_abandoned_stream_is_charged_at_least_its_estimate(tmp_path: Path) -> None:
    flow = await estimated(tmp_path, stream=True)
    flow.answer.status, flow.answer.abandoned, flow.answer.outcome = 200, True, Outcome.STREAM_CUT
    await close_the_books(flow, None)
    assert flow.result.cost_nanos == flow.bill.estimate_nanos


async def test_usage_past_the_bounds_is_charged_the_bound_and_flagged(tmp_path: Path) -> None:
    flow = await estimated(tmp_path)
    huge = Usage(10**15, 0, 0, 0, 10**15, 0)
    flow.answer.status, flow.answer.usage = 200, huge
    await close_the_books(flow, None)
    assert flow.result.cost_nanos == MAX_REQUEST_NANOS
    assert flow.result.error_code == "usage_out_of_range"
    assert flow.result.usage is not None and flow.result.usage.text_input < 10**15


async def test_an_error_decides_the_status_and_outcome(tmp_path: Path) -> None:
    flow = make_flow(tmp_path)
    flow.answer.status = 200
    assert outcome_of(flow, None) == (200, Outcome.OK)
    refused = GatewayError(429, "no", outcome=Outcome.REFUSED_BUDGET)
    assert outcome_of(flow, refused) == (429, Outcome.REFUSED_BUDGET)
    assert outcome_of(flow, upstream_unreachable("x")) == (502, Outcome.UPSTREAM_ERROR)
    assert outcome_of(flow, asyncio.CancelledError()) == (499, Outcome.CLIENT_GONE)
    assert outcome_of(flow, RuntimeError("bug")) == (200, Outcome.ERROR)
    assert outcome_of(make_flow(tmp_path), RuntimeError("bug")) == (500, Outcome.ERROR)
    await close_the_books(flow, refused)
    assert flow.result.error_code is None and flow.result.cost_nanos == 0
