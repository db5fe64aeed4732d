"""The leader's life, on make_flow with a real cache on a SQLite file (no server): filled as the
writer's tap, then finished by the ending: what its followers get, what is stored, and that its
InFlight always ends and closes."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, cast

from gateway.accounting.settle import close_the_books
from gateway.accounting.stages import estimate_cost
from gateway.cache.inflight import Abandoned, Failed, InFlight, Reply, Stored, StreamEnd
from gateway.cache.leader import Leader
from gateway.cache.policy import CachePlan
from gateway.edge.body import SpooledBody
from gateway.errors import upstream_unreachable
from gateway.outcome import Outcome
from gateway.pricing import Usage
from gateway.proxy import pipeline
from gateway.proxy.flow import Caller, Flow
from gateway.store import Store
from tests.factories import KEY, TEAM, FakeUpstreamResponse, make_flow, with_cache

BODY = {"model": "gpt-image-1", "prompt": "a kite", "size": "1024x1024", "quality": "low"}
USAGE = {"input_tokens": 10, "output_tokens": 272, "total_tokens": 282,
         "input_tokens_details": {"text_tokens": 10, "image_tokens": 0}}  # fmt: skip


async def leading(
    tmp: Path, store: Store, *, stream: bool = False
) -> tuple[Flow, Leader, InFlight]:
    flow = await with_cache(make_flow(tmp, json={**BODY, "stream": stream}), store)
    await pipeline.read_request_body(flow)
    await pipeline.inspect_request(flow)
    await estimate_cost(flow)
    flow.caller = Caller(KEY, TEAM)
    flow.cache = CachePlan("k" * 64, "team:1", read=True)
    inflight, first = flow.services.cache.in_flight.claim(flow.cache.key)
    assert first
    leader = Leader(flow.services.cache, flow.cache.key, inflight)
    flow.leader = leader
    return flow, leader, inflight


def body_of(data: bytes) -> SpooledBody:
    body = SpooledBody(content_type="application/json", media_type="application/json")
    body.replace(data)
    return body


def answered(flow: Flow, status: int, content_type: str = "application/json") -> None:
    flow.upstream = cast(Any, FakeUpstreamResponse(status, content_type=content_type))
    flow.answer.status = status


async def test_a_complete_body_is_shared_at_once_then_stored_and_closed(
    tmp_path: Path, store: Store
) -> None:
    flow, leader, inflight = await leading(tmp_path, store)
    data = b'{"created": 1, "data": [{"b64_json": "eA=="}], "usage": %s}' % (
        str(USAGE).replace("'", '"').encode()
    )
    answered(flow, 200)
    flow.response_body = body_of(data)
    flow.answer.images, flow.answer.usage = 1, Usage.from_api(USAGE)
    await close_the_books(flow, None)
    await leader.finish(flow, None)
    reply = inflight.outcome
    assert isinstance(reply, Reply) and reply.body == data and reply.status == 200
    assert reply.cost_nanos == flow.result.cost_nanos
    # Until it is stored, identical requests still join (and are served the reply).
    assert flow.services.cache.in_flight.claim(inflight.key) == (inflight, False)
    await flow.services.cache.drain()  # stored: the in-flight entry closes with it
    hit = await flow.services.cache.lookup(inflight.key)
    assert hit is not None and hit.entry.cost_nanos == flow.result.cost_nanos
    assert flow.services.cache.in_flight.claim(inflight.key)[1]  # closed: a new claim leads


async def test_an_error_answer_is_shared_but_never_stored(tmp_path: Path, store: Store) -> None:
    flow, leader, inflight = await leading(tmp_path, store)
    answered(flow, 400)
    flow.response_body = body_of(b'{"error": {}}')
    await close_the_books(flow, None)
    await leader.finish(flow, None)
    assert isinstance(inflight.outcome, Reply) and inflight.outcome.status == 400
    await flow.services.tasks.settle()
    assert await flow.services.cache.lookup(inflight.key) is None


async def test_a_failed_upstream_call_fails_the_followers_and_other_ends_abandon_them(
    tmp_path: Path, store: Store
) -> None:
    flow, leader, inflight = await leading(tmp_path, store)
    error = upstream_unreachable("down")
    await close_the_books(flow, error)
    await leader.finish(flow, error)
    assert isinstance(inflight.outcome, Failed) and inflight.outcome.error is error
    assert flow.services.cache.in_flight.claim(inflight.key)[1]

    other, leader2, inflight2 = await leading(tmp_path / "2", store)
    bug = RuntimeError("a bug")
    await close_the_books(other, bug)
    await leader2.finish(other, bug)
    assert isinstance(inflight2.outcome, Abandoned)


async def test_a_complete_stream_is_teed_ended_for_followers_and_stored(
    tmp_path: Path, store: Store
) -> None:
    flow, leader, inflight = await leading(tmp_path, store, stream=True)
    answered(flow, 200, "text/event-stream")
    events = [b"event: image_generation.partial_image\ndata: {}\n\n",
              b"event: image_generation.completed\ndata: {}\n\n"]  # fmt: skip
    await leader.started({"content-type": "text/event-stream"})
    for raw in events:
        await leader.event(raw)
    assert inflight.tee is not None and inflight.tee.size == sum(map(len, events))
    flow.answer.images = 1
    await close_the_books(flow, None)
    await leader.finish(flow, None)
    ended = inflight.outcome
    assert isinstance(ended, StreamEnd) and ended.outcome is Outcome.USAGE_MISSING
    # usage_missing is no complete answer: the stream is not stored.
    await flow.services.tasks.settle()
    assert await flow.services.cache.lookup(inflight.key) is None

    ok, leader2, inflight2 = await leading(tmp_path / "2", store, stream=True)
    answered(ok, 200, "text/event-stream")
    await leader2.started({"content-type": "text/event-stream"})
    for raw in events:
        await leader2.event(raw)
    ok.answer.images = 1
    ok.answer.usage = Usage.from_api(USAGE)
    await close_the_books(ok, None)
    await leader2.finish(ok, None)
    assert isinstance(inflight2.outcome, StreamEnd) and inflight2.outcome.outcome is Outcome.OK
    await ok.services.tasks.settle()
    assert isinstance(inflight2.outcome, StreamEnd)  # the first ending stays for followers
    hit = await ok.services.cache.lookup(inflight2.key)
    assert hit is not None and hit.entry.size == sum(map(len, events))


async def test_a_cut_stream_is_never_stored(tmp_path: Path, store: Store) -> None:
    flow, leader, inflight = await leading(tmp_path, store, stream=True)
    answered(flow, 200, "text/event-stream")
    await leader.started({})
    await leader.event(b"event: image_generation.partial_image\ndata: {}\n\n")
    flow.answer = dataclasses.replace(flow.answer, outcome=Outcome.STREAM_CUT, trailer=b"cut")
    await close_the_books(flow, None)
    await leader.finish(flow, None)
    ended = inflight.outcome
    assert isinstance(ended, StreamEnd) and ended.trailer == b"cut"
    await flow.services.tasks.settle()
    assert await flow.services.cache.lookup(inflight.key) is None
    assert not isinstance(inflight.outcome, Stored)
