"""Answering from the cache: a stored body (a hit, or a follower whose leader stored it), the
leader's reply held in memory, or the leader's stream as it arrives.

What holds: every answer here is charged nothing, and its ledger row (with `saved_nanos`, what
the original response cost) is written before its last byte leaves. A stored body goes to the
client from its file by sendfile (or in chunks read on a thread), or from the object store in
chunks, never loaded whole; a small one, kept in the index, is already in memory.
"""

from __future__ import annotations

import asyncio
import time
from typing import BinaryIO

from aiohttp import web

from gateway.accounting import cost_header, record
from gateway.cache.cache import Hit
from gateway.cache.files import SEND_CHUNK
from gateway.cache.inflight import InFlight, Reply, StreamEnd
from gateway.cache.objects import ObjectBody
from gateway.client import (
    CLIENT_GONE,
    ClientWriter,
    cost_comment,
    gateway_headers,
    stream_cut_event,
    stream_headers,
)
from gateway.flow import Flow
from gateway.money import nanos_to_usd
from gateway.outcome import CacheStatus, Outcome

EVENT_STREAM = "text/event-stream"


def _headers(flow: Flow, kept: dict[str, str]) -> dict[str, str]:
    headers = gateway_headers(flow, kept)
    headers["x-request-id"] = flow.request_id  # no upstream request answered this one
    headers["x-gateway-cost-usd"] = cost_header(flow)
    headers["x-gateway-saved-usd"] = nanos_to_usd(flow.bill.saved_nanos)
    return headers


async def serve_stored(flow: Flow, hit: Hit, status: CacheStatus) -> web.StreamResponse:
    """Answer with a stored body (`status` is `hit` or `coalesced`); a stream is replayed as the
    same events, then the gateway's cost comment."""
    entry = hit.entry
    flow.result.cache_status = status
    flow.result.status = 200
    flow.bill.images = entry.images
    flow.bill.saved_nanos = entry.cost_nanos
    try:
        await record(flow)
        headers = _headers(flow, entry.headers)
        headers["age"] = str(max(0, int(time.time() - entry.created_at)))
        trailer = b""
        if entry.content_type == EVENT_STREAM:
            headers.update(stream_headers())
            trailer = cost_comment(flow)
        response = web.StreamResponse(status=200, headers=headers)
        response.content_length = entry.size + len(trailer)
        try:
            await response.prepare(flow.request)
            if trailer:  # a stream: its events start going out now
                flow.services.metrics.stream_opened(flow)
                flow.timings.first_event_at = time.perf_counter()
            if isinstance(hit.body, bytes):
                await response.write(hit.body)
            elif isinstance(hit.body, ObjectBody):
                async for chunk in hit.body.chunks():
                    await response.write(chunk)
            else:
                await _send_file(flow.request, response, hit.body, entry.size)
            if trailer:
                await response.write(trailer)
            await response.write_eof()
        except CLIENT_GONE:
            flow.result.client_gone = True
    finally:
        if isinstance(hit.body, ObjectBody):
            await hit.body.close()
        elif not isinstance(hit.body, bytes):
            await asyncio.to_thread(hit.body.close)
    return response


async def _send_file(
    request: web.Request, response: web.StreamResponse, body: BinaryIO, size: int
) -> None:
    """`size` bytes of `body` to the client: by sendfile where the loop has it, else in chunks
    read on a thread (a loop without sendfile, such as uvloop's)."""
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("the client has gone")
    try:
        await asyncio.get_running_loop().sendfile(transport, body, 0, size)
        return
    except NotImplementedError:
        pass
    remaining = size
    while remaining > 0:
        chunk = await asyncio.to_thread(body.read, min(SEND_CHUNK, remaining))
        if not chunk:
            raise ConnectionResetError("the cached body shrank while it was sent")
        await response.write(chunk)
        remaining -= len(chunk)


async def serve_reply(flow: Flow, reply: Reply, status: CacheStatus) -> web.Response:
    """Answer with the leader's response, held in memory (a follower)."""
    flow.result.cache_status = status
    flow.result.status = reply.status
    if reply.status == 200:
        flow.bill.images = reply.images
        flow.bill.saved_nanos = reply.cost_nanos
    await record(flow)
    return web.Response(status=reply.status, body=reply.body, headers=_headers(flow, reply.headers))


async def follow_stream(flow: Flow, inflight: InFlight, status: CacheStatus) -> web.StreamResponse:
    """Relay the leader's stream from its tee: every event so far at once, then each as it
    arrives; then the leader's ending, and this request's own cost comment."""
    tee = inflight.tee
    assert tee is not None and inflight.stream_headers is not None
    flow.result.cache_status = status
    flow.result.status = 200
    response = web.StreamResponse(
        status=200, headers={**_headers(flow, inflight.stream_headers), **stream_headers()}
    )
    writer = ClientWriter(flow, response)
    await writer.prepare()
    offset = 0
    while not flow.result.client_gone:
        if offset < tee.size:
            data = await tee.read(offset)
            offset += len(data)
            await writer.write(data)
        elif inflight.outcome is not None:
            break
        else:
            await inflight.wait()

    outcome = inflight.outcome
    if isinstance(outcome, StreamEnd):
        flow.result.outcome, trailer = outcome.outcome, outcome.trailer
        if outcome.outcome is Outcome.OK:
            flow.bill.images = outcome.images
            flow.bill.saved_nanos = outcome.cost_nanos
    else:  # the leader ended mid-stream without an ending of its own (or this client left)
        reason = "the identical request this one shared ended early"
        flow.result.outcome, trailer = Outcome.STREAM_CUT, stream_cut_event(reason)
    await writer.write(trailer)
    await record(flow)
    await writer.write(cost_comment(flow))
    await writer.close()
    return response
