"""The stages one by one, on a Flow from `tests.factories`: no server, fake services."""

from __future__ import annotations

import dataclasses
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
