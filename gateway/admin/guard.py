"""What stands before every admin surface (`/admin/*`, the console's sign-in, `/metrics` with a
token): who the client is behind a trusted proxy, a throttle on wrong credentials, and small
bodies read within a deadline.

What holds:
- A client address that failed `MAX_FAILURES` credentials within `WINDOW_S` is answered 429
  (`retry-after`) without the credential being checked, until the oldest failure ages out. Each
  failure is counted in `gateway_admin_auth_failures_total{surface}` and logged (at most one
  line per address per window, so guessing cannot flood the log).
- The address is the TCP peer's, or, when the peer is one of `GATEWAY_TRUSTED_PROXIES`, the
  last address the proxy appended to `X-Forwarded-For`; a client cannot choose it.
- A request is secure when it came over TLS, or through a trusted proxy that says
  `X-Forwarded-Proto: https`.
- An admin or console body is at most `client_max_size` (aiohttp's 1 MiB) and must arrive whole
  within GATEWAY_HEADER_TIMEOUT_S: a slow body is answered 408 and its connection closed, so
  slow clients cannot hold the connection cap.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from aiohttp import web

from gateway.edge.body import body_too_slow
from gateway.errors import GatewayError

log = logging.getLogger(__name__)
MAX_FAILURES = 10
WINDOW_S = 60.0
# Addresses remembered at most: past it the longest-quiet is forgotten (memory stays bounded
# whatever a scan of addresses sends).
MAX_ADDRESSES = 10_000

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(proxies: list[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(proxy, strict=False) for proxy in proxies)


def _in(address: str | None, networks: tuple[Network, ...]) -> bool:
    if address is None or not networks:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(request: web.Request, trusted: tuple[Network, ...]) -> str:
    peer = request.remote or "unknown"
    if _in(peer, trusted):
        forwarded = request.headers.get("X-Forwarded-For", "")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            return hops[-1]  # what the trusted proxy saw; earlier hops are the client's to write
    return peer


def is_secure(request: web.Request, trusted: tuple[Network, ...]) -> bool:
    if request.secure:
        return True
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[-1].strip().lower()
    return proto == "https" and _in(request.remote, trusted)


class AuthThrottle:
    """Wrong credentials per client address, over the last WINDOW_S."""

    def __init__(self, on_failure: Callable[[str], None] = lambda surface: None) -> None:
        self.on_failure = on_failure
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str, now: float) -> deque[float]:
        failures = self._failures.get(address)
        if failures is None:
            return deque()
        while failures and now - failures[0] >= WINDOW_S:
            failures.popleft()
        if not failures:
            del self._failures[address]
        return failures

    def check(self, address: str) -> None:
        """Raise 429 when `address` has used up its tries."""
        now = time.monotonic()
        failures = self._recent(address, now)
        if len(failures) >= MAX_FAILURES:
            wait = max(1, int(WINDOW_S - (now - failures[0])) + 1)
            raise GatewayError(
                429,
                f"Too many wrong admin credentials from this address: try again in {wait} s.",
                type="requests",
                code="rate_limit_exceeded",
                headers={"retry-after": str(wait)},
            )

    def failed(self, address: str, surface: str) -> None:
        now = time.monotonic()
        failures = self._recent(address, now)
        if not failures:
            log.warning("wrong %s credentials from %s", surface, address)
            self._failures[address] = failures
        failures.append(now)
        self._failures.move_to_end(address)
        if len(self._failures) > MAX_ADDRESSES:
            self._failures.popitem(last=False)
        if len(failures) == MAX_FAILURES:
            log.warning(
                "%d wrong %s credentials from %s within %g s: refusing it for a while",
                MAX_FAILURES, surface, address, WINDOW_S,
            )  # fmt: skip
        self.on_failure(surface)


async def read_small_body(request: web.Request, timeout_s: float) -> bytes:
    """The whole body (at most aiohttp's `client_max_size`), or 408 when it takes longer than
    `timeout_s` to arrive. Later `request.read()`/`post()` calls get it from aiohttp's cache."""
    try:
        return await asyncio.wait_for(request.read(), timeout_s)
    except TimeoutError:
        raise body_too_slow(f"it did not arrive within {timeout_s:g} s") from None
