"""The one writer to the client: a stream as it arrives then its trailer and cost comment; a
whole answer held until it is costed; the gateway's own errors; nothing written after the client
left. No server: the connection is make_mocked_request's recording writer."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError
from gateway.outcome import CacheStatus
from gateway.proxy.client import (
    Client,
    cost_comment,
    gateway_headers,
    stream_cut_event,
    stream_headers,
)
from gateway.proxy.flow import Answer, Result
from gateway.proxy.sse import event_name
from tests.factories import make_flow, sent_to_client


class Tap:
    """A cache leader's part: what it saw of the stream."""

    def __init__(self) -> None:
        self.headers: dict[str, str] | None = None
        self.events: list[bytes] = []

    async def started(self, headers: dict[str, str]) -> None:
        self.headers = headers

    async def event(self, raw: bytes | bytearray) -> None:
        self.events.append(bytes(raw))

    async def finish(self, flow: Any, error: BaseException | None) -> None:
        raise AssertionError("the writer never finishes a leader")


async def test_a_stream_goes_out_as_it_arrives_then_its_trailer_and_cost(tmp_path: Path) -> None:
    flow = make_flow(tmp_path)
    tap = Tap()
    await flow.client.open_stream(200, {"x-a": "1"}, tap)
    event = b"event: image_generation.partial_image\ndata: {}\n\n"
    await flow.client.write(event)
    assert sent_to_client(flow)[2] == event and tap.events == [event]  # the client, then tap
    flow.answer.trailer = stream_cut_event("upstream went away")
    flow.result = Result(status=200, cost_nanos=1_500_000)
    await flow.client.finish(flow, None)
    _, headers, sent = sent_to_client(flow)
    assert headers["x-a"] == "1" and headers["X-Accel-Buffering"] == "no"
    trailer = sent[len(event) :]
    assert trailer.startswith(flow.answer.trailer) and event_name(flow.answer.trailer) == "error"
    assert json.loads(flow.answer.trailer.split(b"data: ")[1])["error"]["code"] == "stream_cut"
    assert trailer.endswith(b": gateway-cost-usd=0.0015\n\n")
    assert tap.events == [event]  # the tap never sees the trailer
    assert flow.client.stream_open and flow.client.first_event_at is not None


async def test_a_stream_that_failed_in_the_gateway_ends_with_a_cut_event(tmp_path: Path) -> None:
    flow = make_flow(tmp_path)
    await flow.client.open_stream(200, {})
    await flow.client.finish(flow, RuntimeError("a bug"))
    sent = sent_to_client(flow)[2]
    assert event_name(sent) == "error" and b"the gateway failed" in sent


async def test_after_the_client_leaves_writes_go_nowhere(tmp_path: Path) -> None:
    flow = make_flow(tmp_path)
    await flow.client.open_stream(200, {})
    writer: Any = flow.request._payload_writer
    writer.write.side_effect = ConnectionResetError("the client left")
    for _ in range(3):
        await flow.client.write(b"data: x\n\n")
    await flow.client.finish(flow, None)
    assert flow.client.gone and writer.write.call_count == 1
    assert not writer.write_eof.called


async def test_a_whole_answer_waits_for_its_cost(tmp_path: Path) -> None:
    flow = make_flow(tmp_path)
    flow.client.send_whole(200, {"content-type": "application/json"}, b'{"data": []}', 12)
    assert flow.client.response is None
    flow.result = Result(status=200, cost_nanos=42_000_000)
    await flow.client.finish(flow, None)
    status, headers, body = sent_to_client(flow)
    assert (status, body) == ("HTTP/1.1 200", b'{"data": []}')
    assert headers["x-gateway-cost-usd"] == "0.042" and "x-gateway-saved-usd" not in headers


async def test_a_stored_stream_is_replayed_with_its_cost_comment_counted_in_its_length(
    tmp_path: Path,
) -> None:
    flow = make_flow(tmp_path)
    stored = b"event: image_generation.completed\ndata: {}\n\n"
    flow.client.send_whole(200, {}, stored, len(stored), events=True)
    flow.result = Result(status=200, cache_status=CacheStatus.HIT, saved_nanos=5_000_000)
    await flow.client.finish(flow, None)
    _, headers, sent = sent_to_client(flow)
    assert sent == stored + cost_comment(flow.result)
    assert headers["Content-Length"] == str(len(sent))
    assert (headers["x-gateway-cost-usd"], headers["x-gateway-saved-usd"]) == ("0.00", "0.005")
    assert flow.client.stream_open


async def test_the_gateways_own_error_is_answered_by_the_writer_but_not_a_408(
    tmp_path: Path,
) -> None:
    flow = make_flow(tmp_path)
    refused = GatewayError(429, "slow down", code="rate_limit_exceeded")
    await flow.client.finish(flow, refused)
    assert flow.client.response is not None and flow.client.response.status == 429
    assert flow.client.response.headers["x-gateway-cache"] == "bypass"

    slow = make_flow(tmp_path)
    await slow.client.finish(slow, GatewayError(408, "too slow", code="request_timeout"))
    assert slow.client.response is None  # the error middleware closes that connection


async def test_every_answer_says_its_request_and_cache_status(tmp_path: Path) -> None:
    flow = make_flow(tmp_path)
    flow.answer = dataclasses.replace(Answer(), served=CacheStatus.HIT)
    flow.rate_headers["x-ratelimit-remaining-requests"] = "9"
    headers = gateway_headers(flow, {"content-type": "application/json"})
    assert headers == {
        "content-type": "application/json",
        "x-ratelimit-remaining-requests": "9",
        "x-gateway-request-id": "req_unit",
        "x-gateway-cache": "hit",
    }
    assert stream_headers()["X-Accel-Buffering"] == "no"
    assert isinstance(flow.client, Client)
