"""Test doubles for the unit layer, as mitmproxy's `tflow` and `taddons` are for its addons:
a Flow for one request, with Services made of fakes, and no server.

    flow = make_flow(json={"model": "gpt-image-1", "prompt": "p"}, store=FakeStore(keys=[...]))
    await pipeline.authenticate(flow)
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json as jsonlib
from pathlib import Path
from typing import Any, cast
from unittest import mock

from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.accounting.periods import Periods
from gateway.edge.auth import hash_key
from gateway.edge.endpoints import endpoint_for
from gateway.proxy.client import Client
from gateway.proxy.flow import Flow
from gateway.runtime.services import Services
from gateway.settings import Settings
from gateway.store import ApiKey, Store, Team
from gateway.store.base import LedgerRow, Spend

TEAM = Team(1, "design", None, "month", None, None, "2026-12-01T00:00:00+00:00")
SECRET = "sk-gw-unit-test-secret"
KEY = ApiKey("key_1", 1, "design", None, "sk-gw-unit", None, "month", None, None, "", None)


class FakeStore:
    """The parts of a Store the stages under test use: keys by hash, reservations that fit or
    not, and the ledger rows written (in `rows`)."""

    def __init__(self, keys: dict[str, tuple[ApiKey, Team]] | None = None, fits: bool = True):
        self.keys = keys if keys is not None else {hash_key(SECRET): (KEY, TEAM)}
        self.fits = fits
        self.rows: list[LedgerRow] = []
        self.reserved: list[int] = []

    async def find_key_by_hash(self, key_hash: str) -> tuple[ApiKey, Team] | None:
        return self.keys.get(key_hash)

    async def reserve(self, *, amount_nanos: int, **_: Any) -> int | None:
        if not self.fits:
            return None
        self.reserved.append(amount_nanos)
        return len(self.reserved)

    async def record(self, row: LedgerRow) -> None:
        self.rows.append(row)

    async def spend(self, scope: str, scope_id: str, *_: Any) -> Spend:
        """Every scope: a budget of 1 nano-dollar, nothing spent or held."""
        return Spend(budget_nanos=1, budget_period="month", spent_nanos=0, reserved_nanos=0)


def make_services(tmp: Path, store: Any = None, **settings: Any) -> Services:
    """Services for `Settings(data_dir=tmp, **settings)`, with `store` (a FakeStore by default)
    in place of the real one."""
    real = Services.for_settings(Settings(data_dir=tmp, **settings))
    return dataclasses.replace(real, store=cast(Store, store or FakeStore()))


def make_flow(
    tmp: Path,
    *,
    path: str = "/v1/images/generations",
    method: str = "POST",
    json: Any = None,
    headers: dict[str, str] | None = None,
    store: Any = None,
    **settings: Any,
) -> Flow:
    """A Flow for one request, before any stage ran. With `json`, the body is that JSON and the
    Content-Type says so; `Authorization` carries SECRET unless `headers` says otherwise."""
    sent = CIMultiDict({"Authorization": f"Bearer {SECRET}", **(headers or {})})
    body = b"" if json is None else jsonlib.dumps(json).encode()
    if json is not None:
        sent.setdefault("Content-Type", "application/json")
        sent["Content-Length"] = str(len(body))
    payload = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
    payload.feed_data(body)
    payload.feed_eof()
    request = make_mocked_request(method, path, headers=sent, payload=payload)
    services = make_services(tmp, store, **settings)
    return Flow(
        request=request,
        services=services,
        endpoint=endpoint_for(path.removeprefix("/v1/images/")),
        upstream_path="",
        request_id="req_unit",
        client=Client(request, services.metrics),
    )


class FakeContent:
    """What the relay reads of an upstream body: its chunks, then `fails` (an exception, such as
    aiohttp.ClientPayloadError) or the end; `_buffer` as aiohttp's reader keeps it."""

    def __init__(self, chunks: list[bytes], fails: BaseException | None = None) -> None:
        self.chunks = chunks
        self.fails = fails
        self._buffer: Any = None
        self._buffer_offset = 0

    async def iter_any(self) -> Any:
        for chunk in self.chunks:
            yield chunk
        if self.fails is not None:
            raise self.fails


class FakeUpstreamResponse:
    """An upstream answer, as the relay sees an aiohttp.ClientResponse."""

    def __init__(
        self,
        status: int = 200,
        chunks: list[bytes] | None = None,
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        fails: BaseException | None = None,
    ) -> None:
        self.status = status
        self.content_type = content_type
        self.headers = CIMultiDictProxy(
            CIMultiDict({"Content-Type": content_type, "x-request-id": "req_up", **(headers or {})})
        )
        self.content = FakeContent(chunks or [], fails)
        self.closed = self.released = False

    def close(self) -> None:
        self.closed = True

    def release(self) -> None:
        self.released = True


class FakeUpstream:
    """services.upstream: answers every `send` with the next of `answers` (and keeps what was
    sent)."""

    def __init__(self, *answers: FakeUpstreamResponse) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[str, str]] = []

    async def send(self, method: str, path: str, *_: Any, **__: Any) -> FakeUpstreamResponse:
        self.sent.append((method, path))
        return self.answers.pop(0)


def event(name: str, data: dict[str, Any]) -> bytes:
    """One SSE event as upstream sends it."""
    return f"event: {name}\ndata: {jsonlib.dumps(data)}\n\n".encode()


def sent_to_client(flow: Flow) -> tuple[str, dict[str, str], bytes]:
    """What the writer sent on the flow's (mocked) connection: status line, headers, bytes;
    or, for a response it left for aiohttp to send, the same read from that response."""
    response = flow.client.response
    writer: Any = flow.request._payload_writer  # make_mocked_request's recording writer
    if response is not None and not response.prepared:
        assert isinstance(response, web.Response)
        body = response.body
        assert isinstance(body, bytes)
        return f"HTTP/1.1 {response.status}", dict(response.headers), body
    (status_line, headers), _ = writer.write_headers.call_args
    data = b"".join(bytes(call.args[0]) for call in writer.write.call_args_list)
    return " ".join(status_line.split(" ")[:2]), dict(headers), data


async def with_cache(flow: Flow, store: Store) -> Flow:
    """`flow` with a real store (a migrated SQLite file: no server) and a started cache on it."""
    from gateway.cache.cache import ResponseCache

    cache = ResponseCache(flow.services.settings, store)
    await cache.start()
    flow.services = dataclasses.replace(flow.services, store=store, cache=cache)
    return flow


# A store's teams, keys and holds, for the store tests (on SQLite here, both engines in e2e).

USD = 1_000_000_000


async def team_and_key(store: Store, **team_limits: Any) -> tuple[int, str]:
    team = await store.create_team("design", **team_limits)
    await store.create_key(
        key_id="key_1", team_id=team.id, name="ci", key_hash="h" * 64, prefix="sk-gw-abc"
    )
    return team.id, "key_1"


async def reserve(
    store: Store,
    team_id: int,
    key_id: str,
    amount: int,
    request_id: str,
    owner: str | None = "host:1",
) -> Any:
    return await store.reserve(
        key_id=key_id,
        team_id=team_id,
        amount_nanos=amount,
        periods=Periods.at(dt.datetime.now(dt.UTC)),
        now=dt.datetime.now(dt.UTC).timestamp(),
        ttl_s=600,
        request_id=request_id,
        owner=owner,
        endpoint="generations",
        model="gpt-image-1",
    )
