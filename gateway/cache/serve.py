"""The cache as a source of answers: a stored body (a hit, or a follower whose leader stored it),
the leader's reply held in memory, or the leader's stream as it arrives. Each is handed to the
client's writer; `flow.answer` says what it was (charged nothing; `saved_nanos`, what it cost
when it was bought).

A stored body goes to the client from its file by sendfile (or in chunks read on a thread), or
from the object store in chunks, never loaded whole; a small one, kept in the index, is already
in memory.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from gateway.cache.cache import Hit
from gateway.cache.inflight import InFlight, Reply, StreamEnd
from gateway.errors import GatewayError
from gateway.outcome import CacheStatus, Outcome
from gateway.proxy.client import gateway_headers, stream_cut_event
from gateway.proxy.flow import Flow

EVENT_STREAM = "text/event-stream"


def _headers(flow: Flow, kept: Mapping[str, str]) -> dict[str, str]:
    headers = gateway_headers(flow, kept)
    headers["x-request-id"] = flow.request_id  # no upstream request answered this one
    return headers


def serve_stored(flow: Flow, hit: Hit, status: CacheStatus) -> bool:
    """Answer with a stored body (`status` is `hit` or `coalesced`); a stream is replayed as the
    same events, then the gateway's cost comment."""
    entry, answer = hit.entry, flow.answer
    answer.served, answer.status = status, 200
    answer.images, answer.saved_nanos = entry.images, entry.cost_nanos
    headers = _headers(flow, entry.headers)
    headers["age"] = str(max(0, int(time.time() - entry.created_at)))
    events = entry.content_type == EVENT_STREAM
    flow.client.send_whole(200, headers, hit.body, entry.size, events=events)
    return True


def serve_reply(flow: Flow, reply: Reply, status: CacheStatus) -> bool:
    """Answer with the leader's response, held in memory (a follower)."""
    answer = flow.answer
    answer.served, answer.status = status, reply.status
    if reply.status == 200:
        answer.images, answer.saved_nanos = reply.images, reply.cost_nanos
    headers = _headers(flow, reply.headers)
    flow.client.send_whole(reply.status, headers, reply.body, len(reply.body))
    return True


def fail_as_leader_did(flow: Flow, error: GatewayError, status: CacheStatus) -> GatewayError:
    """The error the leader's upstream call failed with, for this follower to raise as its own
    (served by the cache: `status`), charged nothing."""
    flow.answer.served = status
    return GatewayError(
        error.status, error.message, type=error.type, code=error.code, headers=error.headers
    )


async def follow_stream(flow: Flow, inflight: InFlight, status: CacheStatus) -> bool:
    """Relay the leader's stream from its tee: every event so far at once, then each as it
    arrives; the leader's ending (its trailer) and this request's cost comment follow from the
    writer."""
    tee = inflight.tee
    assert tee is not None and inflight.stream_headers is not None
    answer, client = flow.answer, flow.client
    answer.served, answer.status = status, 200
    headers = _headers(flow, inflight.stream_headers)
    headers["x-gateway-cost-usd"] = "0.00"  # a follower is charged nothing, known at once
    await client.open_stream(200, headers)
    offset = 0
    while not client.gone:
        if offset < tee.size:
            data = await tee.read(offset)
            offset += len(data)
            await client.write(data)
        elif inflight.outcome is not None:
            break
        else:
            await inflight.wait()

    outcome = inflight.outcome
    if isinstance(outcome, StreamEnd):
        answer.outcome, answer.trailer = outcome.outcome, outcome.trailer
        if outcome.outcome is Outcome.OK:
            answer.images, answer.saved_nanos = outcome.images, outcome.cost_nanos
    else:  # the leader ended mid-stream without an ending of its own (or this client left)
        reason = "the identical request this one shared ended early"
        answer.outcome, answer.trailer = Outcome.STREAM_CUT, stream_cut_event(reason)
    return True
