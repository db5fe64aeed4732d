"""The admin surfaces' guard (gateway/admin/guard.py): wrong credentials throttled per client
address (the proxy's word believed only from a trusted proxy), slow bodies cut, and the
console's sign-in and sign-out as an operator would meet them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request

from gateway.admin.guard import (
    MAX_FAILURES,
    AuthThrottle,
    client_address,
    is_secure,
    trusted_networks,
)
from gateway.app import create_app
from gateway.console.session import COOKIE
from gateway.errors import GatewayError
from gateway.runtime.state import SERVICES
from gateway.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.e2e.test_console import sign_in

# Starts the servers it tests itself (or needs no fixture's database): run once, not again on
# PostgreSQL.
pytestmark = pytest.mark.one_pass

PROXY = trusted_networks(["127.0.0.0/8"])


def test_the_client_address_is_the_proxys_word_only_when_the_proxy_is_trusted() -> None:
    forwarded = {"X-Forwarded-For": "6.6.6.6, 10.1.2.3", "X-Forwarded-Proto": "https"}
    peer = mock.Mock()
    peer.get_extra_info.side_effect = lambda name, default=None: (
        ("127.0.0.1", 40000) if name == "peername" else default
    )
    request = make_mocked_request("GET", "/admin/teams", headers=forwarded, transport=peer)
    # The peer is 127.0.0.1: trusted here, and the proxy appended the last hop.
    assert client_address(request, PROXY) == "10.1.2.3"
    assert is_secure(request, PROXY)
    untrusted = trusted_networks(["192.0.2.0/24"])
    assert client_address(request, untrusted) == "127.0.0.1"
    assert not is_secure(request, untrusted)


def test_ten_failures_a_minute_refuse_that_address_only() -> None:
    counted: list[str] = []
    throttle = AuthThrottle(counted.append)
    for _ in range(MAX_FAILURES):
        throttle.check("a")
        throttle.failed("a", "admin")
    try:
        throttle.check("a")
        raise AssertionError("the eleventh try should have been refused")
    except GatewayError as refused:
        assert refused.status == 429 and int(refused.headers["retry-after"]) <= 61
    throttle.check("b")  # another address is not held up
    assert counted == ["admin"] * MAX_FAILURES


async def test_wrong_admin_and_console_credentials_are_throttled_and_counted(
    aiohttp_client: Any, make_settings: Callable[..., Settings]
) -> None:
    client = await aiohttp_client(create_app(make_settings(trusted_proxies=["127.0.0.0/8"])))
    guesser = {"X-Forwarded-For": "203.0.113.7"}
    started = time.monotonic()
    for i in range(MAX_FAILURES):
        wrong = await client.get(
            "/admin/teams", headers={**guesser, "Authorization": f"Bearer guess-{i}"}
        )
        assert wrong.status == 401
    # The right token from that address is refused too, for a while: guessing stops here.
    right = {**guesser, "Authorization": f"Bearer {ADMIN_TOKEN}"}
    refused = await client.get("/admin/teams", headers=right)
    assert refused.status == 429 and "retry-after" in refused.headers
    assert (await refused.json())["error"]["code"] == "rate_limit_exceeded"
    # The console's sign-in shares the count: the same address gets 429 there too.
    login = await client.post("/console/login", data={"token": "x"}, headers=guesser)
    assert login.status == 429
    # Another address (the operator's) is not held up.
    other = {"X-Forwarded-For": "198.51.100.1", "Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert (await client.get("/admin/teams", headers=other)).status == 200
    assert time.monotonic() - started < 5
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_admin_auth_failures_total{surface="admin"} 10.0' in metrics


async def test_a_slow_admin_body_is_cut_at_the_header_timeout(
    aiohttp_client: Any, make_settings: Callable[..., Settings]
) -> None:
    client = await aiohttp_client(create_app(make_settings(header_timeout_s=0.5)))
    host, port = client.server.host, client.server.port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        b"POST /admin/teams HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\nContent-Length: 100\r\n\r\n{"
    )
    await writer.drain()
    started = time.monotonic()
    answer = await asyncio.wait_for(reader.read(), timeout=5)  # the server closes it
    assert answer.startswith(b"HTTP/1.1 408")
    assert time.monotonic() - started < 2
    writer.close()


async def test_sign_out_ends_the_session_on_every_replica_and_sign_in_checks_origin(
    aiohttp_client: Any, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(trusted_proxies=["127.0.0.0/8"])
    here = await aiohttp_client(create_app(settings))
    there = await aiohttp_client(create_app(settings))  # another replica on the same store
    foreign = await here.post(
        "/console/login", data={"token": ADMIN_TOKEN}, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status == 403
    # Behind a TLS-ending proxy the cookie is Secure.
    secure = await here.post(
        "/console/login",
        data={"token": ADMIN_TOKEN},
        headers={"X-Forwarded-Proto": "https"},
        allow_redirects=False,
    )
    assert "Secure" in secure.headers["Set-Cookie"]
    csrf = await sign_in(here)
    cookie = here.session.cookie_jar.filter_cookies(here.make_url("/console/"))[COOKIE].value
    taken = {"Cookie": f"{COOKIE}={cookie}"}
    assert (await there.get("/console/", headers=taken, allow_redirects=False)).status == 200
    signed_out = await here.post("/console/logout", data={"csrf": csrf}, allow_redirects=False)
    assert signed_out.status == 303
    # The cookie's signature is still good, but the session is over, here and there.
    for replica in (here, there):
        again = await replica.get("/console/", headers=taken, allow_redirects=False)
        assert (again.status, again.headers["Location"]) == (303, "/console/login")
    assert await here.app[SERVICES].store.console_session_ended("no-such-session") is False
