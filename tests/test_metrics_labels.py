"""What a request is counted under: refusal reasons read from its outcome, bounded model labels,
status classes."""

from __future__ import annotations

from pathlib import Path

from gateway.errors import GatewayError
from gateway.metrics.labels import model_label, refusal_reason, status_class
from gateway.outcome import Outcome
from gateway.proxy.flow import Result
from tests.factories import make_flow


async def test_refusal_reasons_follow_the_outcome(tmp_path: Path) -> None:
    flow = make_flow(tmp_path)
    expected = {
        Outcome.REFUSED_AUTH: "auth",
        Outcome.REFUSED_BUDGET: "budget",
        Outcome.REFUSED_RATE: "rpm",
        Outcome.REFUSED_POLICY: "policy",
        Outcome.INVALID: "invalid",
    }
    for outcome in Outcome:
        flow.result = Result(outcome=outcome)
        assert refusal_reason(flow, None) == expected.get(outcome)
    flow.result = Result(outcome=Outcome.REFUSED_RATE)
    images = GatewayError(429, "x", type="images", outcome=Outcome.REFUSED_RATE)
    assert refusal_reason(flow, images) == "ipm"


async def test_model_labels_are_price_table_names_never_what_a_client_typed(
    tmp_path: Path,
) -> None:
    flow = make_flow(tmp_path)
    assert model_label(flow) == "none"
    flow.bill.price = flow.services.prices.table.lookup("gpt-image-2-2026-04-21")
    assert model_label(flow) == "gpt-image-2"
    assert status_class(404) == "4xx" and status_class(0) == "none"
