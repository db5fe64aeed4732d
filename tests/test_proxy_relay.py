"""The relay, on a Flow from `tests.factories` with a fake upstream answer: what it notes in
`flow.answer` and what it hands the client's writer, for whole bodies and streams, complete, cut,
failed and abandoned. No server: the client's connection is make_mocked_request's."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.errors import GatewayError
from gateway.outcome import Outcome
from gateway.pricing import Usage
from gateway.proxy import pipeline, relay
from gateway.proxy.flow import Flow
from gateway.proxy.sse import event_name
from tests.factories import (
    FakeUpstream,
    FakeUpstreamResponse,
    event,
    make_flow,
    sent_to_client,
)

BODY = {"model": "gpt-image-1", "prompt": "a kite", "size": "1024x1024", "quality": "low"}
USAGE = {
    "input_tokens": 10,
    "output_tokens": 272,
    "total_tokens": 282,
    "input_tokens_details": {"text_tokens": 10, "image_tokens": 0},
}


async def flow_with(tmp: Path, answer: FakeUpstreamResponse, **body: Any) -> Flow:
    """A flow whose request was read and inspected, about to call `answer`."""
    flow = make_flow(tmp, json={**BODY, **body})
    flow.services = dataclasses.replace(flow.services, upstream=FakeUpstream(answer))
    await pipeline.read_request_body(flow)
    await pipeline.inspect_request(flow)
    await relay.call_upstream(flow)
    return flow


async def test_a_401_from_upstream_is_the_operators_problem_not_the_clients(
    tmp_path: Path,
) -> None:
    with pytest.raises(GatewayError) as refused:
        await flow_with(tmp_path, FakeUpstreamResponse(401, [b'{"error": {}}']))
    assert (refused.value.status, refused.value.code) == (502, "upstream_auth_failed")


async def test_a_whole_body_is_read_noted_and_handed_over_once(tmp_path: Path) -> None:
    body = json.dumps({"created": 1, "data": [{"b64_json": "eA=="}] * 2, "usage": USAGE})
    flow = await flow_with(
        tmp_path, FakeUpstreamResponse(200, [body[:10].encode(), body[10:].encode()])
    )
    assert await relay.relay_response(flow) is True
    answer = flow.answer
    assert (answer.status, answer.images, answer.upstream_request_id) == (200, 2, "req_up")
    assert answer.usage == Usage.from_api(USAGE)
    assert flow.timings.upstream_started and flow.timings.upstream_ended
    # Nothing is sent before the ending costs it: the writer holds the whole answer.
    assert flow.client.response is None
    await flow.client.finish(flow, None)
    status, headers, sent = sent_to_client(flow)
    assert status == "HTTP/1.1 200" and sent == body.encode()
    assert headers["x-gateway-cost-usd"] == "0.00"  # the result's (not computed in this test)
    assert headers["x-gateway-request-id"] == "req_unit"


async def test_an_upstream_error_body_is_passed_on_with_the_upstream_key_redacted(
    tmp_path: Path,
) -> None:
    from gateway.ops.logs import redact_secret

    redact_secret("sk-upstream-secret-1234")
    error = b'{"error": {"message": "bad key sk-upstream-secret-1234"}}'
    flow = await flow_with(tmp_path, FakeUpstreamResponse(400, [error]))
    await relay.relay_response(flow)
    await flow.client.finish(flow, None)
    status, _, sent = sent_to_client(flow)
    assert status == "HTTP/1.1 400" and b"sk-upstream-secret" not in sent
    assert flow.answer.usage is None and flow.answer.images == 0


async def test_a_body_cut_off_midway_is_an_upstream_failure(tmp_path: Path) -> None:
    cut = aiohttp.ClientPayloadError("cut")
    flow = await flow_with(tmp_path, FakeUpstreamResponse(200, [b'{"data": ['], fails=cut))
    with pytest.raises(GatewayError) as failed:
        await relay.relay_response(flow)
    assert failed.value.code == "upstream_unreachable"


def stream_of(*events: bytes, fails: BaseException | None = None) -> FakeUpstreamResponse:
    return FakeUpstreamResponse(200, list(events), content_type="text/event-stream", fails=fails)


PARTIAL = event("image_generation.partial_image", {"b64_json": "eA==", "partial_image_index": 0})
COMPLETED = event("image_generation.completed", {"b64_json": "eA==", "usage": USAGE})


async def test_a_complete_stream_goes_out_event_by_event_and_is_noted(tmp_path: Path) -> None:
    flow = await flow_with(tmp_path, stream_of(PARTIAL, COMPLETED), stream=True, partial_images=1)
    await relay.relay_response(flow)
    status, headers, sent = sent_to_client(flow)
    assert status == "HTTP/1.1 200" and headers["X-Accel-Buffering"] == "no"
    assert sent == PARTIAL + COMPLETED  # as it arrived; the cost comment comes from the ending
    answer = flow.answer
    assert (answer.outcome, answer.trailer, answer.images) == (Outcome.OK, b"", 1)
    assert answer.usage == Usage.from_api(USAGE) and answer.partial_images_pending == 0
    assert flow.client.stream_open and flow.client.first_event_at is not None


async def test_a_stream_cut_before_its_completed_event_says_why(tmp_path: Path) -> None:
    broken = aiohttp.ClientPayloadError("connection lost")
    flow = await flow_with(tmp_path, stream_of(PARTIAL, fails=broken), stream=True)
    await relay.relay_response(flow)
    answer = flow.answer
    assert answer.outcome is Outcome.STREAM_CUT and answer.partial_images_pending == 1
    assert event_name(answer.trailer) == "error" and b"ClientPayloadError" in answer.trailer
    # The event that arrived whole went out; the trailer is the writer's to send at the end.
    assert sent_to_client(flow)[2] == PARTIAL


async def test_a_stream_that_just_stops_is_cut_too(tmp_path: Path) -> None:
    flow = await flow_with(tmp_path, stream_of(PARTIAL), stream=True)
    await relay.relay_response(flow)
    assert flow.answer.outcome is Outcome.STREAM_CUT
    assert b"before its completed event" in flow.answer.trailer


async def test_an_error_event_ends_the_stream_charged_its_own_usage(tmp_path: Path) -> None:
    error = event("error", {"error": {"message": "moderation"}, "usage": USAGE})
    flow = await flow_with(tmp_path, stream_of(error), stream=True)
    await relay.relay_response(flow)
    assert flow.answer.outcome is Outcome.UPSTREAM_ERROR and flow.answer.trailer == b""
    assert flow.answer.usage == Usage.from_api(USAGE)


async def test_an_event_past_the_size_limit_stops_the_read(tmp_path: Path) -> None:
    flow = await flow_with(tmp_path, stream_of(b"data: " + b"x" * 2000), stream=True)
    flow.services = dataclasses.replace(
        flow.services,
        settings=flow.services.settings.model_copy(update={"upstream_max_event_bytes": 1000}),
    )
    await relay.relay_response(flow)
    assert flow.upstream is not None and flow.upstream.closed
    assert flow.answer.outcome is Outcome.STREAM_CUT and b"1000 bytes" in flow.answer.trailer
    assert not flow.answer.abandoned


async def test_a_stream_whose_client_left_alone_is_no_longer_read(tmp_path: Path) -> None:
    flow = await flow_with(tmp_path, stream_of(PARTIAL, COMPLETED), stream=True)
    flow.client.left()
    await relay.relay_response(flow)
    assert flow.answer.abandoned and flow.answer.outcome is Outcome.STREAM_CUT
    assert flow.answer.images == 0  # read no further than the first chunk
