"""The one writer to the client: status, headers (cost, cache), a whole body or a stream of
events, and the gateway's own errors, whatever the source (upstream, the cache, a twin in flight).

A source tells the writer what to send; the writer sends it:
- a stream goes out as it arrives: `open_stream`, then `write` each event (each also goes to the
  tap, the cache leader, after the client: nothing the cache does delays the client);
- a whole answer is handed over (`send_whole`) and kept until the request's result is known;
- `finish`, a step of the request's ending, runs after the ledger row is written: it sends the
  whole answer with `x-gateway-cost-usd`, or ends the stream with its trailer and the cost
  comment, or answers the gateway's own error.

What holds: a client that leaves is noticed (`gone`) and written to no more, while the request
goes on being read and charged; a stream counts as open (in the metrics) from `open_stream` until
the request is reported.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from aiohttp import web

from gateway.cache.files import SEND_CHUNK
from gateway.cache.objects import ObjectBody
from gateway.edge.body import SpooledBody
from gateway.errors import CLIENT_GONE, GatewayError, error_body
from gateway.money import nanos_to_usd
from gateway.proxy.flow import Flow, Lead, Result, WholeBody
from gateway.proxy.sse import format_event


class StreamCounter(Protocol):
    def stream_opened(self) -> None: ...


@dataclass(slots=True)
class Whole:
    status: int
    headers: dict[str, str]
    body: WholeBody
    size: int
    events: bool  # a stored event stream: the cost comment follows it


def gateway_headers(flow: Flow, base: Mapping[str, str]) -> dict[str, str]:
    """`base` (upstream's headers, or those stored with a cached body) plus the gateway's own:
    rate-limit headers, request id, cache status."""
    headers = dict(base)
    headers.update(flow.rate_headers)
    headers["x-gateway-request-id"] = flow.request_id
    headers["x-gateway-cache"] = flow.cache_status.value
    return headers


def stream_headers() -> dict[str, str]:
    # X-Accel-Buffering tells nginx-like fronts not to buffer the stream.
    return {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def stream_cut_event(reason: str) -> bytes:
    """The `error` event that ends a stream cut before its completed event."""
    error = error_body(
        f"The image stream was cut off: {reason}. Not every image was delivered.",
        type="upstream_error",
        code="stream_cut",
    )
    return format_event("error", error)


def cost_comment(result: Result) -> bytes:
    """The last bytes of a stream: what it was charged, as an SSE comment clients ignore."""
    return f": gateway-cost-usd={nanos_to_usd(result.cost_nanos)}\n\n".encode()


def cost_headers(result: Result) -> dict[str, str]:
    headers = {"x-gateway-cost-usd": nanos_to_usd(result.cost_nanos)}
    if result.cache_status.served_by_cache:
        headers["x-gateway-saved-usd"] = nanos_to_usd(result.saved_nanos)
    return headers


class Client:
    """One request's writer (see the module's docstring)."""

    def __init__(self, request: web.Request, metrics: StreamCounter) -> None:
        self.request = request
        self.metrics = metrics
        self.gone = False  # the client has left: nothing more is written
        self.stream_open = False
        self.first_event_at: float | None = None
        self._stream: web.StreamResponse | None = None
        self._tap: Lead | None = None
        self._whole: Whole | None = None
        self.response: web.StreamResponse | None = None  # what the handler returns

    def left(self) -> None:
        self.gone = True

    # A stream, as it arrives.

    async def open_stream(
        self, status: int, headers: dict[str, str], tap: Lead | None = None
    ) -> None:
        """The stream's status and headers go out; from now on each `write` is an event. `tap`
        (a cache leader) sees the stream after the client does."""
        self._stream = self.response = web.StreamResponse(
            status=status, headers={**headers, **stream_headers()}
        )
        try:
            await self._stream.prepare(self.request)
        except CLIENT_GONE:
            self.gone = True
        self._counted_open()
        self._tap = tap
        if tap is not None:
            await tap.started(headers)

    async def write(self, data: bytes | bytearray) -> None:
        """Whole events (or a run of them) to the client, then to the tap."""
        await self._send(data)
        if self._tap is not None:
            await self._tap.event(data)

    async def _send(self, data: bytes | bytearray) -> None:
        if self.first_event_at is None:
            self.first_event_at = time.perf_counter()
        if self.gone or self._stream is None:
            return
        try:
            await self._stream.write(data)
        except CLIENT_GONE:
            self.gone = True

    def _counted_open(self) -> None:
        if not self.stream_open:
            self.stream_open = True
            self.metrics.stream_opened()

    # A whole answer, sent once it is costed.

    def send_whole(
        self,
        status: int,
        headers: dict[str, str],
        body: WholeBody,
        size: int,
        *,
        events: bool = False,
    ) -> None:
        self._whole = Whole(status, headers, body, size, events)

    # The end: after the ledger row is written.

    async def finish(self, flow: Flow, error: BaseException | None) -> None:
        """Send what is left: the stream's trailer and cost comment, the whole answer with its
        cost, or the gateway's own error (which the error middleware answers otherwise)."""
        result = flow.result
        if self._stream is not None:
            trailer = flow.answer.trailer
            if error is not None and not trailer:
                trailer = stream_cut_event("the gateway failed while relaying it")
            await self._end_stream(trailer + cost_comment(result))
        elif self._whole is not None:
            whole, self._whole = self._whole, None
            await self._send_whole(whole, result)
        elif isinstance(error, GatewayError) and error.status != 408:
            # (A 408 is the middleware's: it closes the connection of a client too slow.)
            response = error.response()
            response.headers["x-gateway-cache"] = result.cache_status.value
            self.response = response

    async def _end_stream(self, last: bytes) -> None:
        await self._send(last)
        if not self.gone and self._stream is not None:
            try:
                await self._stream.write_eof()
            except CLIENT_GONE:
                self.gone = True

    async def _send_whole(self, whole: Whole, result: Result) -> None:
        headers = {**whole.headers, **cost_headers(result)}
        body = whole.body
        try:
            if isinstance(body, bytes) and not whole.events:
                self.response = web.Response(status=whole.status, body=body, headers=headers)
                return
            trailer = b""
            if whole.events:
                headers.update(stream_headers())
                trailer = cost_comment(result)
            response = self.response = web.StreamResponse(status=whole.status, headers=headers)
            response.content_length = whole.size + len(trailer)
            try:
                await response.prepare(self.request)
                if whole.events:  # a stored stream: its events start going out now
                    self._counted_open()
                    self.first_event_at = time.perf_counter()
                await self._send_body(response, body, whole.size)
                if trailer:
                    await response.write(trailer)
                await response.write_eof()
            except CLIENT_GONE:
                self.gone = True
        finally:
            if isinstance(body, ObjectBody):
                await body.close()
            elif not isinstance(body, bytes | SpooledBody):
                body.close()  # a cached body's duplicate descriptor: nothing to flush

    async def _send_body(self, response: web.StreamResponse, body: WholeBody, size: int) -> None:
        if isinstance(body, bytes):
            await response.write(body)
        elif isinstance(body, SpooledBody):
            payload = body.payload()
            if isinstance(payload, bytes):
                await response.write(payload)
            else:
                async for chunk in payload:
                    await response.write(chunk)
        elif isinstance(body, ObjectBody):
            async for chunk in body.chunks():
                await response.write(chunk)
        else:
            await self._send_file(response, body, size)

    async def _send_file(self, response: web.StreamResponse, body: BinaryIO, size: int) -> None:
        """`size` bytes of `body` to the client: by sendfile where the loop has it, else in
        chunks read on a thread (a loop without sendfile, such as uvloop's)."""
        transport = self.request.transport
        if transport is None:
            raise ConnectionResetError("the client has gone")
        try:
            await asyncio.get_running_loop().sendfile(transport, body, 0, size)
            return
        except NotImplementedError:
            pass
        offset = 0  # read at explicit offsets: the handle may share its position (files.py)
        while offset < size:
            length = min(SEND_CHUNK, size - offset)
            chunk = await asyncio.to_thread(os.pread, body.fileno(), length, offset)
            if not chunk:
                raise ConnectionResetError("the cached body shrank while it was sent")
            await response.write(chunk)
            offset += len(chunk)
