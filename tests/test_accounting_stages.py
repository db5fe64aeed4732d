"""Accounting's stages before upstream, on make_flow: the estimate (and what it refuses), the rate
limits (their headers, their refusal), and the hold (written whatever the budget, or a 429 that
says which budget cannot pay)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from gateway.accounting.stages import check_rate_limits, estimate_cost, reserve_budget
from gateway.errors import GatewayError
from gateway.outcome import Outcome
from gateway.proxy import pipeline
from gateway.proxy.flow import Caller, Flow
from tests.factories import KEY, TEAM, FakeStore, make_flow


async def inspected(tmp: Path, body: dict[str, Any], **settings: Any) -> Flow:
    flow = make_flow(tmp, json=body, **settings)
    await pipeline.read_request_body(flow)
    await pipeline.inspect_request(flow)
    return flow


async def test_the_estimate_bounds_the_request_and_grows_with_it(tmp_path: Path) -> None:
    body = {"model": "gpt-image-1", "prompt": "a kite", "size": "1024x1024", "quality": "low"}
    one, four = await inspected(tmp_path, body), await inspected(tmp_path, {**body, "n": 4})
    await estimate_cost(one)
    await estimate_cost(four)
    assert one.bill.price is not None and one.bill.price.name == "gpt-image-1"
    assert one.bill.price_version == one.services.prices.table.version
    assert 0 < one.bill.estimate_nanos < four.bill.estimate_nanos
    assert one.bill.estimate_input is not None and one.bill.estimate_input.text_input > 0


async def test_the_estimate_refuses_unpriced_text_and_unpayable_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for body, code in (
        ({"model": "no-such-model", "prompt": "p"}, "model_not_priced"),
        ({"model": "gpt-5-mini", "prompt": "p"}, "invalid_value"),
        ({"model": "gpt-image-1", "prompt": "p", "size": "1024x1024"}, "estimate_out_of_range"),
    ):
        if code == "estimate_out_of_range":  # past what one request may cost ($1M; here 1 nano)
            monkeypatch.setattr("gateway.accounting.quote.MAX_REQUEST_NANOS", 1)
        flow = await inspected(tmp_path, body)
        with pytest.raises(GatewayError) as refused:
            await estimate_cost(flow)
        assert refused.value.code == code and refused.value.outcome is Outcome.INVALID


async def test_an_unpriced_model_passes_when_the_operator_allows_it(tmp_path: Path) -> None:
    flow = await inspected(
        tmp_path, {"model": "no-such-model", "prompt": "p"}, allow_unpriced_models=True
    )
    await estimate_cost(flow)
    assert flow.bill.price is None and flow.bill.estimate_nanos == 0


async def test_rate_limits_count_the_request_and_say_where_it_stands(tmp_path: Path) -> None:
    flow = make_flow(tmp_path)
    flow.caller = Caller(dataclasses.replace(KEY, rpm=1), TEAM)
    await check_rate_limits(flow)
    assert flow.rate_headers["x-ratelimit-limit-requests"] == "1"
    again = make_flow(tmp_path)
    again.services = flow.services  # the same limiter
    again.caller = flow.caller
    with pytest.raises(GatewayError) as refused:
        await check_rate_limits(again)
    assert refused.value.outcome is Outcome.REFUSED_RATE and refused.value.status == 429


async def test_a_hold_is_written_for_every_request_budget_or_not(tmp_path: Path) -> None:
    flow = make_flow(tmp_path)
    flow.caller, flow.bill.estimate_nanos = Caller(KEY, TEAM), 10
    await reserve_budget(flow)
    store = flow.services.store
    assert isinstance(store, FakeStore)
    assert store.reserved == [10] and flow.bill.reservation_id == 1


async def test_a_budget_that_cannot_pay_refuses_with_its_outcome(tmp_path: Path) -> None:
    budgeted = dataclasses.replace(KEY, budget_nanos=1)
    flow = make_flow(tmp_path, store=FakeStore(fits=False))
    flow.caller, flow.bill.estimate_nanos = Caller(budgeted, TEAM), 10
    with pytest.raises(GatewayError) as refused:
        await reserve_budget(flow)
    assert refused.value.outcome is Outcome.REFUSED_BUDGET and refused.value.status == 429
    assert "key" in refused.value.message
