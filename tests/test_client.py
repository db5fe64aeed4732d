"""Writing to the client: the writer as a StreamSink (events, then trailer and cost comment, and
nothing after the client left), and the headers and events every answer shares."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from aiohttp import web

from gateway.client import (
    ClientWriter,
    cost_comment,
    gateway_headers,
    stream_cut_event,
    stream_headers,
)
from gateway.outcome import CacheStatus
from gateway.sse import event_name
from tests.factories import make_flow


class FakeResponse:
    """What the writer uses of a StreamResponse; `gone_after` writes, the client leaves."""

    def __init__(self, gone_after: int | None = None) -> None:
        self.sent: list[bytes] = []
        self.prepared = self.ended = False
        self.gone_after = gone_after

    async def prepare(self, request: Any) -> None:
        self.prepared = True

    async def write(self, data: bytes | bytearray) -> None:
        if self.gone_after is not None and len(self.sent) >= self.gone_after:
            raise ConnectionResetError("the client left")
        self.sent.append(bytes(data))

    async def write_eof(self) -> None:
        self.ended = True


async def test_a_stream_goes_out_whole_with_its_trailer_and_cost(tmp_path: Path) -> None:
    flow = make_flow(tmp_path)
    flow.bill.cost_nanos = 1_500_000
    response = FakeResponse()
    writer = ClientWriter(flow, cast(web.StreamResponse, response))
    await writer.started({})
    await writer.event(b"event: image_generation.partial_image\ndata: {}\n\n")
    trailer = stream_cut_event("upstream went away")
    await writer.ended(trailer)
    assert response.prepared and response.ended
    assert response.sent[1] == trailer and event_name(trailer) == "error"
    assert json.loads(trailer.split(b"data: ")[1])["error"]["code"] == "stream_cut"
    assert response.sent[2] == cost_comment(flow) == b": gateway-cost-usd=0.0015\n\n"
    assert flow.timings.first_event_at is not None and not flow.result.client_gone


async def test_after_the_client_leaves_writes_go_nowhere(tmp_path: Path) -> None:
    flow = make_flow(tmp_path)
    response = FakeResponse(gone_after=1)
    writer = ClientWriter(flow, cast(web.StreamResponse, response))
    await writer.started({})
    for _ in range(3):
        await writer.event(b"data: x\n\n")
    await writer.ended(b"")
    assert flow.result.client_gone and len(response.sent) == 1 and not response.ended


async def test_every_answer_says_its_request_and_cache_status(tmp_path: Path) -> None:
    flow = make_flow(tmp_path)
    flow.result.cache_status = CacheStatus.HIT
    flow.result.response_headers["x-ratelimit-remaining-requests"] = "9"
    headers = gateway_headers(flow, {"content-type": "application/json"})
    assert headers == {
        "content-type": "application/json",
        "x-ratelimit-remaining-requests": "9",
        "x-gateway-request-id": "req_unit",
        "x-gateway-cache": "hit",
    }
    assert stream_headers()["X-Accel-Buffering"] == "no"
