"""Issue 10, part 5: the edge. Paths that leave /v1/images/, methods upstream does not serve,
slow and idle clients, too many connections and requests aiohttp cannot parse: each gets a clear
answer in OpenAI's shape, nothing reaches upstream, and the gateway keeps serving.

These tests speak raw HTTP over a socket (an HTTP client would normalise what they send) to the
gateway served as `gateway serve` serves it (`server.start_app`, behind the edge guard)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from gateway.admin import accounts
from gateway.app import create_app
from gateway.runtime.server import start_app
from gateway.runtime.state import SERVICES
from gateway.settings import Settings
from tests.conftest import FakeUpstream
from tests.e2e.test_shutdown import free_port

# Starts the servers it tests itself (or needs no fixture's database): run once, not again on
# PostgreSQL.
pytestmark = pytest.mark.one_pass


class Served:
    def __init__(self, app: web.Application, port: int, key: str) -> None:
        self.app = app
        self.port = port
        self.key = key

    async def exchange(self, raw: bytes) -> tuple[int, dict[str, Any]]:
        """Send `raw`, read the answer to its end: (status, JSON body)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(raw)
            await writer.drain()
            data = await asyncio.wait_for(reader.read(), 5)
        finally:
            writer.close()
        return parse(data)


async def trickle(port: int, head: bytes, byte: bytes, interval: float) -> bytes:
    """Send `head`, then `byte` every `interval` until the gateway answers; the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        for _ in range(int(30 / interval)):
            try:  # wait for an answer as long as the interval, then send one more byte
                first = await asyncio.wait_for(reader.read(1), interval)
            except TimeoutError:
                writer.write(byte)
                continue
            return first + await asyncio.wait_for(reader.read(), 5)
        raise AssertionError("the gateway never answered a client trickling its request")
    finally:
        writer.close()


def parse(data: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"application/json" in head.lower(), head
    return status, json.loads(body)


@pytest.fixture
def edge_settings() -> dict[str, Any]:
    return {}


@pytest.fixture
async def served(
    fake_upstream: FakeUpstream,
    make_settings: Callable[..., Settings],
    edge_settings: dict[str, Any],
) -> AsyncIterator[Served]:
    settings = make_settings(upstream_url=fake_upstream.url, **edge_settings)
    app = create_app(settings)
    port = free_port()
    runner = await start_app(app, "127.0.0.1", port, grace_s=0)
    store = app[SERVICES].store
    await accounts.create_team(store, accounts.TeamCreate(name="t"))
    key = (await accounts.create_key(store, accounts.KeyCreate(team="t"))).secret
    yield Served(app, port, key)
    await runner.cleanup()


def request(method: str, target: str, key: str, body: bytes = b"{}") -> bytes:
    return (
        f"{method} {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


@pytest.mark.parametrize(
    "target",
    [
        "/v1/images/../chat/completions",
        "/v1/images/%2e%2e/chat/completions",
        "/v1/images/%2E%2E/chat/completions",
        "/v1/images/..%2fchat/completions",
        "/v1/images/.%2e/models",
        "/v1/images/%252e%252e/chat/completions",
        "/v1/images//chat/completions",
        "/v1/images/generations/../../chat/completions",
        "/v1/images/a%2f..%2f..%2fchat",
        "/v1/images/a%5c..%5cchat",
        "/v1/images/./generations",
    ],
)
@pytest.mark.parametrize("method", ["POST", "GET", "DELETE"])
async def test_paths_that_leave_images_never_reach_upstream(
    served: Served, fake_upstream: FakeUpstream, target: str, method: str
) -> None:
    status, body = await served.exchange(request(method, target, served.key))
    assert status in (400, 404), body
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert fake_upstream.requests == []


@pytest.mark.parametrize("method", ["DELETE", "PUT", "PATCH"])
async def test_methods_upstream_does_not_serve_are_refused(
    served: Served, fake_upstream: FakeUpstream, method: str
) -> None:
    for target in ("/v1/images/generations", "/v1/images/jobs/123"):
        status, body = await served.exchange(request(method, target, served.key))
        assert (status, body["error"]["code"]) == (405, "method_not_allowed")
    assert fake_upstream.requests == []


async def test_other_images_paths_are_still_forwarded(
    served: Served, fake_upstream: FakeUpstream
) -> None:
    status, _ = await served.exchange(request("GET", "/v1/images/jobs/123?x=1", served.key))
    assert status == 404  # the simulator's answer: it was forwarded, as it is
    assert [r.path for r in fake_upstream.requests] == ["/v1/images/jobs/123"]


@pytest.mark.parametrize("edge_settings", [{"header_timeout_s": 0.5}])
async def test_a_client_trickling_its_headers_is_cut(served: Served) -> None:
    started = time.monotonic()
    head = b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nX-Slow: "
    data = await trickle(served.port, head, b"a", 0.05)
    assert time.monotonic() - started < 3
    status, body = parse(data)
    assert (status, body["error"]["code"]) == (408, "request_timeout")
    metrics = served.app[SERVICES].metrics
    assert metrics.connections_timed_out.labels("header")._value.get() == 1


@pytest.mark.parametrize("edge_settings", [{"body_timeout_s": 0.5, "body_min_bytes_per_s": 1024}])
async def test_a_client_trickling_its_body_is_cut(
    served: Served, fake_upstream: FakeUpstream
) -> None:
    started = time.monotonic()
    head = request("POST", "/v1/images/generations", served.key, b"")
    head = head.replace(b"Content-Length: 0", b"Content-Length: 5000")
    data = await trickle(served.port, head, b" ", 0.05)
    assert time.monotonic() - started < 5
    status, body = parse(data)
    assert (status, body["error"]["code"]) == (408, "request_timeout")
    assert b"x-gateway-request-id: req_gw_" in data.lower()
    assert fake_upstream.requests == []
    store: Any = served.app[SERVICES].store
    rows = await store._all("SELECT status, outcome, error_code FROM ledger")
    assert [tuple(row) for row in rows] == [(408, "invalid", "request_timeout")]


@pytest.mark.parametrize("edge_settings", [{"keepalive_timeout_s": 0.5}])
async def test_an_idle_kept_alive_connection_is_closed(served: Served) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(2)  # idle past the keep-alive timeout
        data = await asyncio.wait_for(reader.read(), 3)
    finally:
        writer.close()
    assert data.startswith(b"HTTP/1.1 200")
    assert reader.at_eof()


@pytest.mark.parametrize("edge_settings", [{"max_connections": 5, "header_timeout_s": 30}])
async def test_past_the_connection_cap_a_503_comes_at_once(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    idle = [await asyncio.open_connection("127.0.0.1", served.port) for _ in range(5)]
    await asyncio.sleep(0.1)
    try:
        for _ in range(20):
            started = time.monotonic()
            status, body = await served.exchange(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (status, body["error"]["code"]) == (503, "too_many_connections")
            assert time.monotonic() - started < 1.5
    finally:
        for _, writer in idle:
            writer.close()
    await asyncio.sleep(0.2)
    status, _ = await served.exchange(request("GET", "/healthz", served.key))
    assert status == 200  # room again once the idle ones went
    assert served.app[SERVICES].metrics.connections_refused._value.get() == 20
    edge_lines = [r for r in caplog.records if r.name == "gateway.edge.guard"]
    assert len(edge_lines) <= 1  # summarised, never one line per connection


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"FO\x01O /v1/images/generations HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (
            b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(200)), 431),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n", 400),
        (b"GET /v1/images/" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 10_000 + b"\r\n\r\n", 431),
    ],
)
async def test_what_the_parser_rejects_is_answered_in_openais_shape(
    served: Served, caplog: pytest.LogCaptureFixture, raw: bytes, status: int
) -> None:
    caplog.set_level(logging.INFO)
    got, body = await served.exchange(raw if raw.endswith(b"\r\n\r\n") else raw + b"\r\n")
    assert got == status, body
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in caplog.records if r.exc_info]
    # The gateway keeps serving.
    fine, _ = await served.exchange(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert fine == 200


async def test_a_blank_admin_token_is_no_token(
    aiohttp_client: Any, make_settings: Callable[..., Settings]
) -> None:
    client = await aiohttp_client(create_app(make_settings(admin_token="   ")))
    for auth in ("Bearer    ", "Bearer", ""):
        response = await client.get("/admin/teams", headers={"Authorization": auth})
        body = await response.json()
        assert (response.status, body["error"]["code"]) == (403, "admin_disabled")


@pytest.mark.parametrize("edge_settings", [{"cache_enabled": True}])
async def test_cache_hits_are_sent_through_the_guard(served: Served) -> None:
    """A hit goes out with sendfile, which swaps the transport's protocol for a while: through
    the guard's wrapper too."""
    body = json.dumps({"model": "gpt-image-1.5", "prompt": "x", "quality": "low"}).encode()
    raw = request("POST", "/v1/images/generations", served.key, body)
    answers = []
    for _ in range(3):
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        try:
            writer.write(raw)
            data = await asyncio.wait_for(reader.read(), 5)
        finally:
            writer.close()
        head, _, payload = data.partition(b"\r\n\r\n")
        answers.append((head.split(b" ", 2)[1], b"x-gateway-cache: hit" in head.lower(), payload))
        await asyncio.sleep(0.3)  # the miss is stored in the background
    assert [status for status, _, _ in answers] == [b"200"] * 3
    assert [hit for _, hit, _ in answers] == [False, True, True]
    assert answers[1][2] == answers[0][2] == answers[2][2]


@pytest.mark.parametrize("edge_settings", [{"header_timeout_s": 0.5, "keepalive_timeout_s": 30}])
async def test_a_later_head_on_a_kept_alive_connection_is_timed_too(served: Served) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = await asyncio.wait_for(reader.readuntil(b'"ok"}'), 5)
        assert first.startswith(b"HTTP/1.1 200")
        await asyncio.sleep(1)  # idle longer than the header timeout: not a slow head, no 408
        started = time.monotonic()
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
        answer = b""
        for byte in head + b"a" * 200:
            writer.write(bytes([byte]))
            try:
                answer = await asyncio.wait_for(reader.read(1), 0.02)
                break
            except TimeoutError:
                continue
        answer += await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    assert time.monotonic() - started < 2.5
    status, body = parse(answer)
    assert (status, body["error"]["code"]) == (408, "request_timeout")
