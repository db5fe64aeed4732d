"""The one long-lived client session to upstream, and the header rules of a reverse proxy.

The client's own Authorization never leaves the gateway; the upstream key goes only into the
Authorization header of upstream requests (never into a response, an error or a log line).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from types import SimpleNamespace

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.errors import upstream_timeout, upstream_unreachable
from gateway.ops.logs import redact
from gateway.settings import Settings

log = logging.getLogger(__name__)

# RFC 9110 §7.6.1 hop-by-hop headers, plus what the client library sets for itself.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Not forwarded upstream: the client's gateway key, and account routing that belongs to the
# gateway's upstream key rather than to the client.
_REQUEST_DROP = _HOP_BY_HOP | {
    "host",
    "authorization",
    "content-length",
    "expect",
    "accept-encoding",
    "content-encoding",  # the body was read decoded, and goes upstream so
    "cookie",
    "openai-organization",
    "openai-project",
    "x-gateway-tags",  # the gateway's own attribution (edge/attribution.py)
}
# Not relayed to the client: framing the server redoes, the upstream account's identity and
# rate-limit counters (they describe the gateway's key, not the client's), and cookies.
_RESPONSE_DROP = _HOP_BY_HOP | {
    "content-length",
    "content-encoding",
    "date",
    "server",
    "set-cookie",
    "alt-svc",
    "openai-organization",
    "openai-project",
    "x-gateway-tags",  # the gateway's own attribution (edge/attribution.py)
}
_RESPONSE_DROP_PREFIXES = ("x-ratelimit-",)


def _connection_listed(headers: Mapping[str, str]) -> set[str]:
    """Headers that the Connection header itself names as hop-by-hop."""
    listed = headers.get("Connection", "")
    return {name.strip().lower() for name in listed.split(",") if name.strip()}


def upstream_request_headers(
    client_headers: Mapping[str, str], api_key: str | None
) -> CIMultiDict[str]:
    drop = _REQUEST_DROP | _connection_listed(client_headers)
    headers: CIMultiDict[str] = CIMultiDict(
        (name, value) for name, value in client_headers.items() if name.lower() not in drop
    )
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def client_response_headers(upstream_headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """The headers relayed to the client: hop-by-hop and the upstream account's own dropped, and
    the upstream key redacted should upstream echo it in one."""
    drop = _RESPONSE_DROP | _connection_listed(upstream_headers)
    return CIMultiDict(
        (name, redact(value))
        for name, value in upstream_headers.items()
        if name.lower() not in drop and not name.lower().startswith(_RESPONSE_DROP_PREFIXES)
    )


class Upstream:
    """A pooled client session to `GATEWAY_UPSTREAM_URL`, opened and closed with the app."""

    def __init__(
        self, settings: Settings, on_waiting: Callable[[int], None] = lambda waiting: None
    ) -> None:
        """`on_waiting(n)` hears how many requests wait for a pooled connection, at each
        change (the metrics' gauge)."""
        self.base = URL(settings.upstream_url.rstrip("/") + "/")
        self.on_waiting = on_waiting
        self.waiting = 0
        self._warned_at = 0.0
        self.read_timeout = settings.upstream_read_timeout_s
        self.connect_timeout = settings.upstream_connect_timeout_s
        self._api_key = (
            settings.upstream_api_key.get_secret_value() if settings.upstream_api_key else None
        )
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=settings.upstream_connect_timeout_s,
            sock_read=settings.upstream_read_timeout_s,
        )
        self._max_connections = settings.upstream_max_connections
        self._session: aiohttp.ClientSession | None = None
        # Responses still being read, so that shutdown can end them at its deadline.
        self._open: weakref.WeakSet[aiohttp.ClientResponse] = weakref.WeakSet()
        self._probe_lock = asyncio.Lock()
        self._probed: tuple[float, str | None] | None = None  # (when, problem)

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, ttl_dns_cache=300, keepalive_timeout=30
        )
        watch = aiohttp.TraceConfig()
        watch.on_connection_queued_start.append(self._queued)
        watch.on_connection_queued_end.append(self._dequeued)
        self._session = aiohttp.ClientSession(
            connector=connector,
            trace_configs=[watch],
            timeout=self._timeout,
            auto_decompress=True,
            read_bufsize=256 * 1024,
            # The client's User-Agent is forwarded; aiohttp must not add its own beside it.
            skip_auto_headers=("User-Agent",),
        )

    async def _queued(self, session: object, context: SimpleNamespace, params: object) -> None:
        """A request waits for a pooled connection: every one is busy."""
        context.queued_at = time.monotonic()
        self.waiting += 1
        self.on_waiting(self.waiting)

    async def _dequeued(self, session: object, context: SimpleNamespace, params: object) -> None:
        self.waiting -= 1
        self.on_waiting(self.waiting)
        waited = time.monotonic() - context.queued_at
        now = time.monotonic()
        if waited > 1.0 and now - self._warned_at > 10.0:  # at most a line per 10 s
            self._warned_at = now
            log.warning(
                "a request waited %.1f s for an upstream connection: all %d are busy (raise"
                " GATEWAY_UPSTREAM_MAX_CONNECTIONS; %d wait now)",
                waited, self._max_connections, self.waiting,
            )  # fmt: skip

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def problem(self, max_age_s: float, timeout_s: float) -> str | None:
        """None when upstream answered HTTP (any status) to `GET models` lately; else what went
        wrong. At most one probe runs at a time, and its answer is reused for `max_age_s`."""
        async with self._probe_lock:
            if self._probed is not None and time.monotonic() - self._probed[0] < max_age_s:
                return self._probed[1]
            problem = await self._probe(timeout_s)
            self._probed = (time.monotonic(), problem)
            return problem

    async def _probe(self, timeout_s: float) -> str | None:
        if self._session is None:
            return "the upstream session is not open"
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        try:
            async with self._session.get(
                self.url("models"),
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as response:
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            where = f"{self.base.host}:{self.base.port}"
            return f"upstream {where} is unreachable ({type(exc).__name__})"
        return None

    def url(self, path_and_query: str) -> URL:
        """`images/edits?x=1` below the upstream base URL."""
        return URL(str(self.base) + path_and_query.lstrip("/"), encoded=True)

    async def send(
        self,
        method: str,
        path_and_query: str,
        client_headers: Mapping[str, str],
        body: bytes | AsyncIterator[bytes] | None,
        content_length: int,
        request_id: str | None = None,
    ) -> aiohttp.ClientResponse:
        """Send one request upstream and return once its status and headers have arrived.
        `request_id`, the gateway's, goes as `X-Client-Request-Id` unless the client sent one.

        Raises GatewayError 502 when upstream cannot be reached or drops the connection, and 504
        when it does not answer in time. The caller must release the response.
        """
        if self._session is None:
            raise RuntimeError("upstream session is not started")
        headers = upstream_request_headers(client_headers, self._api_key)
        if request_id is not None:
            # OpenAI keeps a client-supplied id with the request: the operator can match the
            # gateway's ledger row to upstream's logs (a client's own id is kept instead).
            headers.setdefault("X-Client-Request-Id", request_id)
        # An explicit length keeps the upload un-chunked even when it streams from a spool file.
        headers["Content-Length"] = str(content_length)
        try:
            response = await self._session.request(
                method,
                self.url(path_and_query),
                headers=headers,
                data=body,
                allow_redirects=False,
            )
        except aiohttp.ConnectionTimeoutError as exc:
            raise upstream_timeout(self.connect_timeout, "connect") from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise upstream_timeout(self.read_timeout) from exc
        except aiohttp.ClientConnectorError as exc:
            where = f"{self.base.host}:{self.base.port}"
            raise upstream_unreachable(f"cannot connect to {where}.") from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise upstream_unreachable("it closed the connection without answering.") from exc
        except aiohttp.ClientError as exc:
            raise upstream_unreachable(type(exc).__name__) from exc
        self._open.add(response)
        return response

    def cut_all(self) -> int:
        """Close every upstream response still being read (shutdown's deadline): their relays
        see a broken connection and end as they would for one, a stream with its `stream_cut`
        event and a charge for what it delivered. Returns how many were cut."""
        cut = [response for response in self._open if not response.closed]
        for response in cut:
            response.close()
        return len(cut)
