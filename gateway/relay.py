"""Relay an upstream response to the client: whole bodies chunk by chunk, streams event by event.

Neither path buffers a response whole. A stream's events reach the client the moment their
closing blank line arrives; the events are parsed on the way (the completed event carries the
usage that accounting needs) after they have been written, so parsing never delays them.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from aiohttp import web

from gateway.errors import error_body
from gateway.flow import Flow
from gateway.sse import EventSplitter, ends_stream, event_name, format_event
from gateway.upstream import client_response_headers

log = logging.getLogger(__name__)

# Writing to a client that has gone away raises a ConnectionError (aiohttp's
# ClientConnectionResetError is one).
CLIENT_GONE = (ConnectionError,)
# Reading from an upstream that stops mid-body raises one of these.
UPSTREAM_BROKE = (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, asyncio.TimeoutError)


def is_event_stream(response: aiohttp.ClientResponse) -> bool:
    return response.content_type == "text/event-stream"


def _prepare_headers(flow: Flow, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
    response.headers.update(client_response_headers(upstream.headers))
    response.headers["x-gateway-request-id"] = flow.request_id
    return response


async def relay_body(flow: Flow, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    """Relay a non-stream response. If upstream breaks off, the client's connection is dropped
    too (its body would be incomplete), so a truncated body is never taken for a whole one."""
    response = _prepare_headers(flow, upstream)
    if upstream.content_length is not None and "Content-Encoding" not in upstream.headers:
        response.content_length = upstream.content_length
    await response.prepare(flow.request)
    try:
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
    except CLIENT_GONE:
        flow.client_gone = True
        return response
    except UPSTREAM_BROKE as exc:
        # Headers are out, so no error response is possible: drop the connection, so the client
        # sees a short body (Content-Length) or a missing last chunk, never a complete-looking one.
        log.warning("upstream broke off a response body: %s", type(exc).__name__)
        if flow.request.transport is not None:
            flow.request.transport.close()
        flow.client_gone = True
        return response
    await response.write_eof()
    return response


async def relay_stream(flow: Flow, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    """Relay `text/event-stream` event by event.

    Holds at the end: the client received every whole event upstream sent, and either upstream's
    own ending (a `*.completed` or `error` event, then a clean end of stream) or one final
    `error` event in OpenAI's shape saying the stream was cut.
    """
    response = _prepare_headers(flow, upstream)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # tell nginx-like fronts not to buffer
    await response.prepare(flow.request)

    splitter = EventSplitter()
    finished = False  # a completed or error event has been seen
    failure: str | None = None
    try:
        async for chunk in upstream.content.iter_any():
            for raw in splitter.feed(chunk):
                await response.write(raw)
                finished = finished or ends_stream(event_name(raw))
    except CLIENT_GONE:
        flow.client_gone = True
        return response
    except UPSTREAM_BROKE as exc:
        failure = f"the upstream connection failed ({type(exc).__name__})"

    if failure is None and (not finished or splitter.pending):
        failure = "upstream ended the stream before its completed event"
    if failure is not None:
        log.warning("image stream cut: %s", failure)
        error = error_body(
            f"The image stream was cut off: {failure}. No complete image was delivered.",
            type="upstream_error",
            code="stream_cut",
        )
        try:
            await response.write(format_event("error", error))
        except CLIENT_GONE:
            flow.client_gone = True
            return response
    await response.write_eof()
    return response
