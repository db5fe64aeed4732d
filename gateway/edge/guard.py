"""The edge: what reaches the gateway before a request exists. Slow and idle clients are cut,
connections are capped, and what aiohttp's HTTP parser rejects is answered in OpenAI's shape.

What holds, per listening socket served through `GuardedSite`:
- at most `cap` client connections are open; past it a connection is answered `503` at once
  (with `Retry-After`) and closed, without a handler, a task or a log line of its own;
- a request's head (request line and headers) must arrive within `header_timeout_s` of the
  connection opening (the first) or of its own first byte (later ones on a kept-alive
  connection; `watch_requests` marks where a request ends), or it is answered `408` and closed;
  an idle kept-alive connection closes after aiohttp's keep-alive timeout;
- a request aiohttp cannot parse (unknown method, both Content-Length and Transfer-Encoding,
  too many or too long headers, control characters, an over-long URL) gets a JSON error with
  the right 4xx, logged at info without a traceback;
- the log never floods: refusals and time-outs are counted in /metrics and summarised in at
  most one line per `LOG_EVERY_S`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, LineTooLong
from aiohttp.web_protocol import RequestHandler

from gateway.errors import error_body

log = logging.getLogger(__name__)
LOG_EVERY_S = 10.0
REFUSE_LINGER_S = 1.0  # how long a refused connection may still send before it is closed
_HEAD_ENDS = (b"\r\n\r\n", b"\n\n")
# File descriptors each client connection may need besides its own: upstream, a spool file,
# a cache file; and some for the process itself (store, listeners, logs).
_FDS_PER_CONNECTION = 3
_FDS_RESERVED = 64


def default_connection_cap() -> int:
    """A cap the process's file-descriptor limit can carry (raised to its hard limit first)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return 10_000
    return max(8, (soft - _FDS_RESERVED) // _FDS_PER_CONNECTION)


def raw_response(status: int, message: str, code: str, headers: dict[str, str]) -> bytes:
    """A whole HTTP/1.1 response, JSON in OpenAI's shape, for a connection about to close."""
    body = json.dumps(error_body(message, type="invalid_request_error", code=code)).encode()
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Tally:
    """Counts of what the edge turned away, logged as one summary line now and then."""

    def __init__(self, on_count: Callable[[str], None]) -> None:
        self.on_count = on_count
        self.counts: dict[str, int] = {}
        self.logged_at = 0.0

    def count(self, what: str) -> None:
        self.on_count(what)
        self.counts[what] = self.counts.get(what, 0) + 1
        now = time.monotonic()
        if now - self.logged_at >= LOG_EVERY_S:
            summary = ", ".join(f"{n} {w}" for w, n in sorted(self.counts.items()))
            log.warning("client connections turned away at the edge: %s", summary)
            self.counts.clear()
            self.logged_at = now


class Guard:
    """Shared by every connection of one site: the cap, the timeouts, the tally."""

    def __init__(
        self, *, cap: int, header_timeout_s: float, on_count: Callable[[str], None]
    ) -> None:
        self.cap = cap
        self.header_timeout_s = header_timeout_s
        self.open = 0
        self.tally = Tally(on_count)

    def protocol_factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        def make() -> asyncio.Protocol:
            if self.open >= self.cap:
                self.tally.count("refused")
                return _Refusal()
            self.open += 1
            handler = server()
            # The handler answers parser errors in OpenAI's shape (see OpenAIErrors).
            handler.__class__ = OpenAIErrors
            return _Guarded(self, handler)

        return make


class _Refusal(asyncio.Protocol):
    """Past the cap: 503 straight away, then close (after reading briefly, so the answer is not
    lost to a reset when the client's request is still arriving)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(
            raw_response(
                503,
                "The gateway has too many open connections; try again shortly.",
                "too_many_connections",
                {"Retry-After": "1"},
            )
        )
        if transport.can_write_eof():
            transport.write_eof()
        self.closer = asyncio.get_running_loop().call_later(REFUSE_LINGER_S, transport.close)

    def data_received(self, data: bytes) -> None:
        pass  # read and dropped

    def eof_received(self) -> bool:
        self.transport.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closer.cancel()


class _Guarded(asyncio.Protocol):
    """aiohttp's handler behind a wrapper that watches for the first request's head."""

    def __init__(self, guard: Guard, handler: RequestHandler) -> None:
        self.guard = guard
        self.handler = handler
        self.transport: asyncio.Transport | None = None
        self.awaiting_head = True
        self.tail = b""  # the last bytes seen, for a head's end split across reads
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._arm()  # the first head is timed from the connection: connecting and idling counts
        self.handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.awaiting_head:
            if self.deadline is None:  # a later request's head: timed from its first byte
                self._arm()
            seen = self.tail + data
            if any(end in seen for end in _HEAD_ENDS):
                self.awaiting_head = False
                if self.deadline is not None:
                    self.deadline.cancel()
            else:
                self.tail = seen[-3:]
        self.handler.data_received(data)

    def request_done(self) -> None:
        """The request of the last head has been handled: what arrives next is a new head."""
        self.awaiting_head, self.tail = True, b""
        if self.deadline is not None:
            self.deadline.cancel()
        self.deadline = None

    def _arm(self) -> None:
        self.deadline = asyncio.get_running_loop().call_later(
            self.guard.header_timeout_s, self._too_slow
        )

    def eof_received(self) -> None:
        self.handler.eof_received()

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.open -= 1
        if self.deadline is not None:
            self.deadline.cancel()
        self.handler.connection_lost(exc)

    def _too_slow(self) -> None:
        if not self.awaiting_head or self.transport is None or self.transport.is_closing():
            return
        self.guard.tally.count("header")
        self.transport.write(
            raw_response(
                408,
                f"The request's headers did not arrive within {self.guard.header_timeout_s:g} s.",
                "request_timeout",
                {},
            )
        )
        self.transport.close()


class OpenAIErrors(RequestHandler):
    """aiohttp's request handler, answering what its parser rejects as the API would."""

    __slots__ = ()

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status == 500 or not isinstance(exc, BadHttpMessage):
            return super().handle_error(request, status, exc, message)
        status, code = _parser_status(exc)
        log.info("refused a request aiohttp could not parse: %s", exc)
        response = web.json_response(
            error_body(
                f"The request could not be parsed: {exc.message}",
                type="invalid_request_error",
                code=code,
            ),
            status=status,
        )
        response.force_close()
        return response


def _parser_status(exc: BadHttpMessage) -> tuple[int, str]:
    if isinstance(exc, LineTooLong):
        line = exc.args[0] if exc.args else b""
        text = bytes(line).decode("latin-1") if isinstance(line, bytes | bytearray) else str(line)
        if text.startswith(("/", "http")):  # the request line: the URL was too long
            return 414, "uri_too_long"
        return 431, "headers_too_large"
    if "Too many headers" in exc.message:
        return 431, "headers_too_large"
    if isinstance(exc, BadHttpMethod):
        return 400, "invalid_method"
    return 400, "invalid_http_request"


class GuardedSite(web.BaseSite):
    """A TCP site whose connections go through `guard` (compare aiohttp's TCPSite)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        guard: Guard,
        *,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._guard = guard
        self._reuse_port = reuse_port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.protocol_factory(server),
            self._host,
            self._port,
            reuse_address=True,
            reuse_port=self._reuse_port,
        )


@web.middleware
async def watch_requests(request: web.Request, handler: Any) -> web.StreamResponse:
    """Tells the connection's guard when a request has been handled, so that the next head on
    the same connection is timed too. Does nothing off a guarded site (tests, the simulator)."""
    transport = request.transport
    guarded = transport.get_protocol() if transport is not None else None
    try:
        response: web.StreamResponse = await handler(request)
        return response
    finally:
        if isinstance(guarded, _Guarded):
            guarded.request_done()
