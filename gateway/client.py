"""Writing to the client, and the one interface for where a relayed answer goes.

A stream's events go to every `StreamSink` in order: the client's writer first (so nothing
delays the client), then the cache leader (its file, which the followers read). A whole body
goes to the client and to the leader the same way (`BodySink`). The relay reads upstream and
knows nothing of what a sink does; the cache's answers (hits, followers) write to the client
with the same writer and helpers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Protocol

from aiohttp import web

from gateway.accounting import cost_header
from gateway.body import SpooledBody
from gateway.errors import CLIENT_GONE, error_body
from gateway.flow import Flow
from gateway.sse import format_event


class StreamSink(Protocol):
    """Where a relayed event stream goes."""

    async def started(self, headers: dict[str, str]) -> None:
        """The stream begins, with the headers the client gets."""

    async def event(self, raw: bytes | bytearray) -> None:
        """One whole event, as upstream sent it (an error event redacted)."""

    async def ended(self, trailer: bytes) -> None:
        """The stream is over, and the ledger row written: `trailer` is the gateway's `error`
        event if upstream cut it short, else nothing."""


class BodySink(Protocol):
    """Where a whole (non-stream) answer goes, once it has been read, costed and recorded."""

    async def body(self, headers: dict[str, str], body: SpooledBody) -> None: ...


__all__ = ["CLIENT_GONE"]


def gateway_headers(flow: Flow, base: Mapping[str, str]) -> dict[str, str]:
    """`base` (upstream's headers, or those stored with a cached body) plus the gateway's own:
    rate-limit headers, request id, cache status."""
    headers = dict(base)
    headers.update(flow.result.response_headers)
    headers["x-gateway-request-id"] = flow.request_id
    headers["x-gateway-cache"] = flow.result.cache_status.value
    return headers


def stream_cut_event(reason: str) -> bytes:
    """The `error` event that ends a stream cut before its completed event."""
    error = error_body(
        f"The image stream was cut off: {reason}. Not every image was delivered.",
        type="upstream_error",
        code="stream_cut",
    )
    return format_event("error", error)


def stream_headers() -> dict[str, str]:
    # X-Accel-Buffering tells nginx-like fronts not to buffer the stream.
    return {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def cost_comment(flow: Flow) -> bytes:
    """The last bytes of a stream: what it was charged, as an SSE comment clients ignore."""
    return f": gateway-cost-usd={cost_header(flow)}\n\n".encode()


class ClientWriter:
    """Writes a stream to the client until it leaves; after that, writes go nowhere (the stream
    is still read to its end for accounting). The stream counts as open from `prepare` until the
    request ends, and its first write is its first event. As a StreamSink, it ends the stream
    with the trailer and the cost comment."""

    def __init__(self, flow: Flow, response: web.StreamResponse) -> None:
        self.flow = flow
        self.response = response

    async def prepare(self) -> None:
        try:
            await self.response.prepare(self.flow.request)
        except CLIENT_GONE:
            self.flow.result.client_gone = True
        self.flow.services.metrics.stream_opened(self.flow)

    async def write(self, data: bytes | bytearray) -> None:
        if self.flow.timings.first_event_at is None:
            self.flow.timings.first_event_at = time.perf_counter()
        if self.flow.result.client_gone:
            return
        try:
            await self.response.write(data)
        except CLIENT_GONE:
            self.flow.result.client_gone = True

    async def close(self) -> None:
        if not self.flow.result.client_gone:
            try:
                await self.response.write_eof()
            except CLIENT_GONE:
                self.flow.result.client_gone = True

    async def started(self, headers: dict[str, str]) -> None:
        await self.prepare()

    async def event(self, raw: bytes | bytearray) -> None:
        await self.write(raw)

    async def ended(self, trailer: bytes) -> None:
        if trailer:
            await self.write(trailer)
        await self.write(cost_comment(self.flow))
        await self.close()
