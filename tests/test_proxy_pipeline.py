"""The stages one by one, on a Flow from `tests.factories`: no server, fake services."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

from gateway.errors import GatewayError
from gateway.outcome import Outcome
from gateway.proxy import pipeline
from gateway.proxy.flow import Caller, Flow
from gateway.store import ApiKey
from tests.factories import KEY, TEAM, FakeStore, make_flow


async def test_check_path_keeps_the_raw_path_and_refuses_what_leaves_images(
    tmp_path: Path,
) -> None:
    flow = make_flow(tmp_path, path="/v1/images/generations?a=%41")
    await pipeline.check_path(flow)
    assert flow.upstream_path == "images/generations?a=%41"  # under the upstream URL
    for hostile in ("/v1/images/../models", "/v1/images/%2e%2e/models", "/v1/images/..%2fchat"):
        with pytest.raises(GatewayError) as refused:
            await pipeline.check_path(make_flow(tmp_path, path=hostile))
        assert refused.value.status in (400, 404) and refused.value.outcome is Outcome.INVALID


async def test_known_endpoints_take_post_only(tmp_path: Path) -> None:
    with pytest.raises(GatewayError) as refused:
        await pipeline.check_method(make_flow(tmp_path, method="GET"))
    assert refused.value.status == 405
    await pipeline.check_method(make_flow(tmp_path, method="POST"))


async def test_authenticate_finds_the_live_key_and_refuses_the_rest(tmp_path: Path) -> None:
    flow = make_flow(tmp_path)
    await pipeline.authenticate(flow)
    assert flow.caller == Caller(KEY, TEAM)

    for headers in ({"Authorization": "Bearer sk-gw-other"}, {"Authorization": ""}):
        with pytest.raises(GatewayError) as refused:
            await pipeline.authenticate(make_flow(tmp_path, headers=headers))
        assert refused.value.outcome is Outcome.REFUSED_AUTH
        assert "sk-gw-other" not in refused.value.message  # a key is never echoed

    store = FakeStore()
    only = next(iter(store.keys))
    store.keys[only] = (_revoked(KEY), TEAM)
    with pytest.raises(GatewayError) as refused:
        await pipeline.authenticate(make_flow(tmp_path, store=store))
    assert "revoked" in refused.value.message


async def test_a_body_is_read_and_inspected_into_params(tmp_path: Path) -> None:
    body = {"model": "gpt-image-1", "prompt": "a kite", "n": 2, "stream": True}
    flow = make_flow(tmp_path, json=body)
    await pipeline.read_request_body(flow)
    await pipeline.inspect_request(flow)
    assert flow.params == body and flow.model == "gpt-image-1"
    assert (flow.n, flow.stream) == (2, True)
    await pipeline.remove_spools(flow, None)

    missing_model = make_flow(tmp_path, json={"prompt": "a kite"})
    await pipeline.read_request_body(missing_model)
    with pytest.raises(GatewayError) as refused:
        await pipeline.inspect_request(missing_model)
    assert (refused.value.code, refused.value.param) == ("missing_required_parameter", "model")


def _revoked(key: ApiKey) -> ApiKey:
    return dataclasses.replace(key, revoked_at="2026-12-01T00:00:00+00:00")


async def test_the_ending_runs_every_step_in_order_even_past_a_failing_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []

    def step(name: str, fails: bool = False) -> pipeline.Ending:
        async def run(flow: Flow, error: BaseException | None) -> None:
            ran.append(name)
            if fails:
                raise RuntimeError(name)

        return run

    monkeypatch.setattr(pipeline, "ENDING", (step("a"), step("b", fails=True), step("c")))
    await pipeline.end(make_flow(tmp_path), None)
    assert ran == ["a", "b", "c"]


async def test_a_request_that_fails_after_authentication_has_its_ledger_row(
    tmp_path: Path,
) -> None:
    flow = make_flow(tmp_path, json={"model": "gpt-image-1", "prompt": "p"})
    for stage in pipeline.STAGES[:5]:  # up to inspect_request
        await stage(flow)
    await pipeline.end(flow, RuntimeError("a bug"))
    store = flow.services.store
    assert isinstance(store, FakeStore)
    (row,) = store.rows
    assert (row.key_id, row.status, row.outcome) == ("key_1", 500, "error")
    assert flow.body is not None and flow.body.path is None  # nothing left on disk


def test_the_ending_tells_the_story_in_order() -> None:
    """The result is computed once, then the one commit point (and a response's record), then
    the one writer; the leader, the clean-up and the report after."""
    assert [step.__name__ for step in pipeline.ENDING] == [
        "close_the_books", "write_ledger_row", "record_response", "alert_on_spend",
        "answer_client", "finish_leader",
        "release_upstream", "remove_spools", "report",
    ]  # fmt: skip


async def test_the_first_stage_that_answers_ends_the_chain_and_its_answer_is_sent(
    tmp_path: Path,
) -> None:
    ran: list[str] = []

    async def passes(flow: Flow) -> None:
        ran.append("passes")

    async def answers(flow: Flow) -> bool:
        ran.append("answers")
        flow.answer.status = 200
        flow.client.send_whole(200, {"content-type": "application/json"}, b"{}", 2)
        return True

    async def never(flow: Flow) -> None:
        ran.append("never")

    flow = make_flow(tmp_path)
    response = await pipeline.run(flow, (passes, answers, never))
    assert ran == ["passes", "answers"]
    assert response is flow.client.response and response.status == 200
    assert response.headers["x-gateway-cost-usd"] == "0.00"
    assert flow.result.status == 200 and flow.result.outcome is Outcome.OK


async def test_a_refusal_is_answered_by_the_writer_with_its_ledger_row(tmp_path: Path) -> None:
    flow = make_flow(tmp_path, json={"model": "gpt-image-1", "prompt": "p"})

    async def refuses(flow: Flow) -> None:
        raise GatewayError(429, "over budget", code="insufficient_quota",
                           outcome=Outcome.REFUSED_BUDGET)  # fmt: skip

    response = await pipeline.run(flow, (*pipeline.STAGES[:3], refuses))
    assert response.status == 429 and flow.result.outcome is Outcome.REFUSED_BUDGET
    store = flow.services.store
    assert isinstance(store, FakeStore)
    (row,) = store.rows
    assert (row.status, row.outcome, row.cost_nanos) == (429, "refused_budget", 0)


async def test_a_store_that_fails_before_upstream_refuses_with_a_503(tmp_path: Path) -> None:
    flow = make_flow(tmp_path)

    async def store_locked(flow: Flow) -> None:
        raise sqlite3.OperationalError("database is locked")

    response = await pipeline.run(flow, (store_locked,))
    assert response.status == 503 and response.headers["retry-after"] == "1"
    assert flow.result.error_code == "storage_unavailable"
    assert flow.services.health.store_problem is not None
