"""The cache as a source of answers, on make_flow (no server): a stored body, a leader's reply
in memory, a leader's stream from its tee; each noted in `flow.answer` and handed to the writer,
charged nothing."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

from gateway.accounting.settle import close_the_books
from gateway.cache.cache import Hit
from gateway.cache.files import BodyFiles
from gateway.cache.inflight import Abandoned, InFlight, Reply, StreamEnd
from gateway.cache.serve import follow_stream, serve_reply, serve_stored
from gateway.outcome import CacheStatus, Outcome
from gateway.proxy.sse import event_name
from gateway.store.base import CacheEntry
from tests.factories import make_flow, sent_to_client

EVENTS = b"event: image_generation.completed\ndata: {}\n\n"


def entry(body: bytes, content_type: str = "application/json") -> CacheEntry:
    now = time.time()
    return CacheEntry(
        key="k", scope="team:1", team_id=1, key_id="key_1", endpoint="generations",
        model="gpt-image-1", stream=content_type == "text/event-stream",
        body_sha256=hashlib.sha256(body).hexdigest(), content_type=content_type,
        headers={"content-type": content_type}, size=len(body), images=1,
        cost_nanos=11_000_000, created_at=now - 30, expires_at=now + 60, body=body,
    )  # fmt: skip


async def test_a_stored_body_is_a_hit_that_saves_what_it_cost(tmp_path: Path) -> None:
    flow = make_flow(tmp_path)
    body = b'{"data": []}'
    assert serve_stored(flow, Hit(entry(body), body), CacheStatus.HIT) is True
    answer = flow.answer
    assert (answer.served, answer.status, answer.images, answer.saved_nanos) == (
        CacheStatus.HIT, 200, 1, 11_000_000)  # fmt: skip
    await close_the_books(flow, None)
    assert (flow.result.cost_nanos, flow.result.saved_nanos) == (0, 11_000_000)
    await flow.client.finish(flow, None)
    status, headers, sent = sent_to_client(flow)
    assert (status, sent) == ("HTTP/1.1 200", body)
    assert headers["x-gateway-cache"] == "hit" and headers["x-request-id"] == "req_unit"
    assert headers["x-gateway-saved-usd"] == "0.011" and int(headers["age"]) >= 30


async def test_a_stored_stream_is_replayed_then_its_cost_comment(tmp_path: Path) -> None:
    flow = make_flow(tmp_path)
    serve_stored(flow, Hit(entry(EVENTS, "text/event-stream"), EVENTS), CacheStatus.COALESCED)
    await close_the_books(flow, None)
    await flow.client.finish(flow, None)
    _, headers, sent = sent_to_client(flow)
    assert sent == EVENTS + b": gateway-cost-usd=0.00\n\n"
    assert headers["x-gateway-cache"] == "coalesced"


async def test_a_leaders_reply_is_served_from_memory_errors_saving_nothing(
    tmp_path: Path,
) -> None:
    ok = make_flow(tmp_path)
    serve_reply(
        ok, Reply(200, {"content-type": "application/json"}, b"{}", 2, 5), CacheStatus.COALESCED
    )
    assert (ok.answer.images, ok.answer.saved_nanos) == (2, 5)
    failed = make_flow(tmp_path)
    serve_reply(failed, Reply(400, {}, b'{"error": {}}', 0, 0), CacheStatus.COALESCED)
    await close_the_books(failed, None)
    assert failed.result.status == 400 and failed.result.outcome is Outcome.UPSTREAM_ERROR
    assert failed.result.saved_nanos == 0


async def test_a_follower_relays_the_tee_then_the_leaders_ending(
    tmp_path: Path,
) -> None:
    files = BodyFiles(tmp_path / "cache")
    files.prepare(empty_tmp=True, shared=False)
    tee = await files.new_tee()
    inflight = InFlight("k")
    inflight.attach_tee(tee, {"content-type": "text/event-stream"})
    ticket = inflight.join()
    await tee.append(EVENTS)
    flow = make_flow(tmp_path)
    following = asyncio.create_task(follow_stream(flow, inflight, CacheStatus.COALESCED))
    await asyncio.sleep(0.05)
    assert sent_to_client(flow)[2] == EVENTS  # what the tee holds goes out at once
    inflight.end(StreamEnd(Outcome.OK, b"", 1, 7))
    inflight.notify()
    assert await following is True
    await inflight.leave(ticket)
    await tee.release()
    assert (flow.answer.outcome, flow.answer.saved_nanos, flow.answer.images) == (Outcome.OK, 7, 1)


async def test_a_follower_whose_leader_gave_up_mid_stream_ends_cut(tmp_path: Path) -> None:
    files = BodyFiles(tmp_path / "cache")
    files.prepare(empty_tmp=True, shared=False)
    tee = await files.new_tee()
    abandoned = InFlight("k")
    abandoned.attach_tee(tee, {})
    abandoned.end(Abandoned())
    flow = make_flow(tmp_path)
    await follow_stream(flow, abandoned, CacheStatus.COALESCED)
    assert flow.answer.outcome is Outcome.STREAM_CUT and event_name(flow.answer.trailer) == "error"
    await close_the_books(flow, None)
    assert flow.result.outcome is Outcome.STREAM_CUT and flow.result.cost_nanos == 0
    await tee.release()
