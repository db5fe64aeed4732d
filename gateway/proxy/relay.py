"""Upstream as a source of answers: the call, and its answer read and handed to the client's
writer (client.py), with what accounting needs noted on the way (`flow.answer`).

A whole (non-stream) body is read first, spooled past a threshold, so that its `usage` is known
(and its ledger row committed, by the ending) before the client receives the body with
`x-gateway-cost-usd`.

A stream is relayed event by event, each the moment its closing blank line arrives; it is never
buffered whole. Events are inspected after they are written, so inspection never delays them. The
cost is known only at the end, so the writer sends it as a last SSE comment `: gateway-cost-usd=…`.
If the client leaves, the stream is still read to its end, so what upstream produced is charged
(unless no one else waits for it: then it is no longer read, and charged its estimate).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from typing import Any

import aiohttp

from gateway.edge.body import SpooledBody, TooLarge, spool_chunks
from gateway.errors import GatewayError, upstream_unreachable
from gateway.ops.logs import redact_bytes
from gateway.outcome import Outcome
from gateway.pricing import SvgUsage, Usage
from gateway.pricing.usage import stream_usage
from gateway.proxy.client import gateway_headers, stream_cut_event
from gateway.proxy.flow import Flow
from gateway.proxy.sse import EventSplitter, event_name
from gateway.proxy.upstream import client_response_headers
from gateway.proxy.usage_scan import ScannedObject, event_data, scan_file, scan_object
from gateway.responses.reading import inspect_event as inspect_response_event
from gateway.responses.reading import read_response_body

log = logging.getLogger(__name__)

# Reading from an upstream that stops mid-body raises one of these.
UPSTREAM_BROKE = (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, asyncio.TimeoutError)
# What accounting reads from an images response: its usage objects (decoded) and its images
# (counted, never decoded).
_DECODED = frozenset({"usage", "svg_usage"})
_COUNTED = frozenset({"data"})
# A body or event this large is scanned on a thread: the scan skips strings in C, but an
# upstream could send many small values, each a step in Python.
LARGE_SCAN_BYTES = 64 * 1024


async def call_upstream(flow: Flow) -> None:
    """Upstream has answered with a status and headers; its body is still to be read."""
    body = flow.body
    assert body is not None
    request = flow.request
    flow.timings.upstream_started = time.perf_counter()
    flow.upstream = await flow.services.upstream.send(
        request.method,
        flow.upstream_path,
        request.headers,
        body.payload(),
        body.size,
        request_id=flow.request_id,
    )
    if flow.upstream.status == 401:
        # Upstream rejected the gateway's own key. Passing that on would tell the client its
        # key is wrong (and echo a masked upstream key); it is the operator's problem instead.
        raise GatewayError(
            502,
            "The upstream API rejected the gateway's credentials. Ask the gateway's operator"
            " to check GATEWAY_UPSTREAM_API_KEY.",
            type="upstream_error",
            code="upstream_auth_failed",
        )


def read_usage(found: Any) -> Usage | None:
    """`usage` as the gateway bills it, or None (logged) when absent or unreadable."""
    if found is None:
        return None
    try:
        return Usage.from_api(found)
    except ValueError:
        log.warning("upstream sent a usage object the gateway cannot read: %.300r", found)
        return None


def read_svg_usage(found: Any) -> SvgUsage | None:
    if found is None:
        return None
    try:
        return SvgUsage.from_api(found)
    except ValueError:
        log.warning("upstream sent an svg_usage the gateway cannot read: %.300r", found)
        return None


async def scan_body(body: SpooledBody) -> ScannedObject:
    """The usage objects and image count of a whole response body, large ones on a thread."""
    if body.path is not None:
        return await asyncio.to_thread(scan_file, body.path, decode=_DECODED, count=_COUNTED)
    data = body.buffer()
    if len(data) > LARGE_SCAN_BYTES:
        return await asyncio.to_thread(scan_object, data, decode=_DECODED, count=_COUNTED)
    return scan_object(data, decode=_DECODED, count=_COUNTED)


def salvage_buffered(content: aiohttp.StreamReader) -> bytes:
    """The bytes aiohttp had received when the connection broke but not yet handed out.

    Its readers raise the connection's error before returning what they hold, so an event that
    arrived whole just before a cut would be lost; this takes it from the reader's buffer."""
    buffer: deque[bytes] | None = getattr(content, "_buffer", None)
    if not buffer:
        return b""
    offset: int = getattr(content, "_buffer_offset", 0)
    data = b"".join(buffer)[offset:]
    buffer.clear()
    content._buffer_offset = 0
    return data


async def relay_response(flow: Flow) -> bool:
    """Upstream's answer is read (a stream: relayed as it arrives) and handed to the writer."""
    upstream = flow.upstream
    assert upstream is not None
    flow.answer.status = upstream.status
    flow.answer.upstream_request_id = upstream.headers.get("x-request-id")
    if upstream.content_type == "text/event-stream":
        await relay_stream(flow, upstream)
    else:
        await read_body(flow, upstream)
    return True


async def read_body(flow: Flow, upstream: aiohttp.ClientResponse) -> None:
    """The whole body is read (spooled past a threshold) and scanned for what it produced;
    the writer sends it once it is costed."""
    settings = flow.services.settings
    try:
        body = await spool_chunks(
            upstream.content.iter_any(),
            content_type=upstream.headers.get("Content-Type", ""),
            threshold=settings.response_memory_bytes,
            spool_dir=settings.spool_dir,
            limit=settings.upstream_max_body_bytes,
        )
    except UPSTREAM_BROKE as exc:
        raise upstream_unreachable(f"the response was cut off ({type(exc).__name__}).") from exc
    except TooLarge as exc:
        upstream.close()
        log.error("request %s: upstream's answer passed the limit, %s", flow.request_id, exc)
        raise upstream_unreachable(
            f"its answer was larger than {settings.upstream_max_body_bytes} bytes"
            " (GATEWAY_UPSTREAM_MAX_BODY_BYTES)."
        ) from exc
    flow.timings.upstream_ended = time.perf_counter()
    flow.response_body = body  # removed by the request's ending
    answer = flow.answer
    if upstream.status == 200 and flow.ask is not None:
        await read_response_body(flow, body)
    elif upstream.status == 200:
        found = await scan_body(body)
        answer.usage = read_usage(found.members.get("usage"))
        answer.svg_usage = read_svg_usage(found.members.get("svg_usage"))
        answer.images = found.counts.get("data", flow.n)
    elif not body.spooled:
        body.replace(redact_bytes(body.buffer()))  # an error that echoes the upstream key
    headers = gateway_headers(flow, client_response_headers(upstream.headers))
    content = body if body.spooled else body.bytes_in_memory()
    flow.client.send_whole(upstream.status, headers, content, body.size)


async def relay_stream(flow: Flow, upstream: aiohttp.ClientResponse) -> None:
    """Holds at the end: the client received every whole event upstream sent; `flow.answer`
    says whether upstream ended it (and how) or why it was cut, with the `error` event the
    writer then sends before the cost comment."""
    headers = gateway_headers(flow, client_response_headers(upstream.headers))
    tap = flow.leader if upstream.status == 200 else None
    await flow.client.open_stream(upstream.status, headers, tap)

    splitter = EventSplitter()
    finished = False  # the last completed event, or an error event, has been seen

    async def relay(chunk: bytes) -> None:
        nonlocal finished
        for raw in splitter.feed(chunk):
            name = event_name(raw) or ""
            if name == "error":
                raw = bytearray(redact_bytes(raw))  # an error that echoes the upstream key
            await flow.client.write(raw)
            finished = await _inspect_event(flow, name, raw) or finished

    settings = flow.services.settings
    failure: str | None = None
    lifetime = asyncio.timeout(settings.upstream_max_stream_s)
    try:
        async with lifetime:
            async for chunk in upstream.content.iter_any():
                await relay(chunk)
                failure = _reason_to_stop(flow, splitter)
                if failure is not None:
                    upstream.close()  # nothing more of it is read
                    flow.answer.abandoned = failure is CLIENT_LEFT
                    break
    except UPSTREAM_BROKE as exc:
        if lifetime.expired():
            failure = f"it lasted longer than {settings.upstream_max_stream_s:g} s"
            upstream.close()
        else:
            failure = f"the upstream connection failed ({type(exc).__name__})"
            # Whole events that arrived before the cut are delivered (and charged) all the same.
            await relay(salvage_buffered(upstream.content))
    flow.timings.upstream_ended = time.perf_counter()
    if failure is None and (not finished or splitter.pending):
        failure = "upstream ended the stream before its completed event"
    if failure is not None:
        log.warning("image stream cut: %s", failure)
        flow.answer.outcome = Outcome.STREAM_CUT
        flow.answer.trailer = stream_cut_event(failure)


CLIENT_LEFT = "the client left, and no one else waits for this stream"


def _reason_to_stop(flow: Flow, splitter: EventSplitter) -> str | None:
    """Why the stream must not be read on, if it must not: an event past the size limit (no
    separator in sight), or a client that left while no one else waits for the answer (no
    follower, not to be cached)."""
    limit = flow.services.settings.upstream_max_event_bytes
    if splitter.pending > limit:
        return f"an event grew past {limit} bytes (GATEWAY_UPSTREAM_MAX_EVENT_BYTES)"
    if flow.client.gone and flow.leader is None:
        return CLIENT_LEFT
    return None


async def _inspect_event(flow: Flow, name: str, raw: bytearray) -> bool:
    """Count what the event `name` carries; True when it ends the stream: the completed event
    of the last of the n images, or an error."""
    if flow.ask is not None:
        return await inspect_response_event(flow, name, raw)
    answer = flow.answer
    if name.endswith(".partial_image"):
        answer.partial_images_pending += 1
    elif name.endswith(".completed"):
        answer.images += 1
        answer.partial_images_pending = 0
        found = await _scan_event(raw)
        if (usage := read_usage(found.members.get("usage"))) is not None:
            answer.stream_usages.append(usage)
            answer.usage = stream_usage(answer.stream_usages)
        answer.svg_usage = read_svg_usage(found.members.get("svg_usage")) or answer.svg_usage
        return answer.images >= flow.n
    elif name == "error":
        answer.outcome = Outcome.UPSTREAM_ERROR
        # An error event is charged what its own usage says, if it has one (else nothing more).
        if (usage := read_usage((await _scan_event(raw)).members.get("usage"))) is not None:
            answer.stream_usages.append(usage)
            answer.usage = stream_usage(answer.stream_usages)
        return True
    return False


async def _scan_event(raw: bytearray) -> ScannedObject:
    data, start, end = event_data(raw)
    scan = functools.partial(scan_object, data, decode=_DECODED, start=start, end=end)
    return await asyncio.to_thread(scan) if end - start > LARGE_SCAN_BYTES else scan()
