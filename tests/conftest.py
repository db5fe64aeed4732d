"""Shared fixtures: a recording fake upstream (the simulator), a gateway in front of it, keys.

The fake upstream is the built-in simulator with `record=True`: it answers like the Images API
and keeps every request exactly as it arrived (headers, fields, file bytes), so tests can assert
what reached upstream.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.admin import accounts
from gateway.app import create_app
from gateway.runtime.state import SERVICES
from gateway.settings import Settings
from gateway.store import Store, open_store
from simulator import SIMULATOR_STATE, SimulatorConfig, SimulatorState, create_simulator_app
from tests.postgres_server import PostgresServer
from tests.redis_server import RedisServer
from tests.s3_server import BUCKET, S3Server

UPSTREAM_KEY = "sk-upstream-test-0123456789abcdef"
ADMIN_TOKEN = "admin-test-token"

# The developer's own GATEWAY_* variables must not leak into the tests.
for _name in list(os.environ):
    if _name.startswith("GATEWAY_"):
        del os.environ[_name]


@dataclass
class FakeUpstream:
    server: TestServer
    state: SimulatorState

    @property
    def url(self) -> str:
        return str(self.server.make_url("/v1"))

    @property
    def requests(self) -> list[Any]:
        return self.state.requests


@pytest.fixture
def simulator(aiohttp_server: Any) -> Callable[..., Awaitable[FakeUpstream]]:
    """Starts the simulator as upstream, recording what it is sent, with `SimulatorConfig`
    options (`latency_ms=600`, `partial_interval_ms=250`, …)."""

    async def start(**config: Any) -> FakeUpstream:
        app = create_simulator_app(SimulatorConfig(record=True, api_key=UPSTREAM_KEY, **config))
        return FakeUpstream(await aiohttp_server(app), app[SIMULATOR_STATE])

    return start


@pytest.fixture
async def fake_upstream(simulator: Callable[..., Awaitable[FakeUpstream]]) -> FakeUpstream:
    return await simulator()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the session, started by the first test that asks."""
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def pg_url(postgres_server: PostgresServer) -> str:
    """A fresh database of its own for the test."""
    return await postgres_server.new_database()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def s3_bucket(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[S3Server]:
    """An S3-compatible server (moto's) with an empty bucket BUCKET, and AWS credentials for it
    in the environment, as a deployment would have them."""
    from aiobotocore.session import get_session

    for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):  # fmt: skip
        monkeypatch.setenv(name, value)
    server = S3Server()
    server.start()
    async with get_session().create_client("s3", endpoint_url=server.endpoint_url) as client:
        await client.create_bucket(Bucket=BUCKET)
    yield server
    server.stop()


def _on_postgres(request: pytest.FixtureRequest) -> Callable[[], str] | None:
    """With TEST_DATABASE=postgres, gateways the tests make run on a fresh PostgreSQL database
    each (`make test` runs the store-agnostic end-to-end tests a second time so)."""
    if os.environ.get("TEST_DATABASE") != "postgres":
        return None
    server: PostgresServer = request.getfixturevalue("postgres_server")

    def new_database() -> str:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:  # the test's loop is running
            return pool.submit(asyncio.run, server.new_database()).result()

    return new_database


@pytest.fixture
def make_settings(tmp_path: Path, request: pytest.FixtureRequest) -> Callable[..., Settings]:
    postgres = _on_postgres(request)

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "upstream_api_key": UPSTREAM_KEY,
            "admin_token": ADMIN_TOKEN,
            "spool_threshold_bytes": 64 * 1024,
            "upstream_read_timeout_s": 5,
            "upstream_connect_timeout_s": 2,
            # A database call that waits this long on this shared, loaded machine is a slow
            # moment, not what a test asks about (the tests of a sick store set their own).
            "database_timeout_s": 15,
            # Most tests count the calls that reach upstream, so they repeat identical requests
            # on purpose; the cache tests (test_cache_*.py) turn it on.
            "cache_enabled": False,
        }
        if postgres is not None and "database_url" not in overrides:
            values["database_url"] = postgres()
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def gateway_overrides() -> dict[str, Any]:
    """Settings for the `gateway` fixture beyond make_settings' own; a test module overrides it."""
    return {}


@pytest.fixture
async def gateway(
    aiohttp_client: Any,
    fake_upstream: FakeUpstream,
    make_settings: Callable[..., Settings],
    gateway_overrides: dict[str, Any],
) -> TestClient[web.Request, web.Application]:
    settings = make_settings(upstream_url=fake_upstream.url, **gateway_overrides)
    client: TestClient[web.Request, web.Application] = await aiohttp_client(create_app(settings))
    return client


@pytest.fixture
async def make_key(
    gateway: TestClient[web.Request, web.Application],
) -> Callable[..., Any]:
    async def make(team: str = "team-a", **limits: Any) -> str:
        store = gateway.app[SERVICES].store
        if await store.get_team(team) is None:
            await accounts.create_team(store, accounts.TeamCreate(name=team))
        issued = await accounts.create_key(store, accounts.KeyCreate(team=team, **limits))
        return issued.secret

    return make


@pytest.fixture
async def key(make_key: Callable[..., Any]) -> str:
    secret: str = await make_key()
    return secret


@pytest.fixture
async def sdk(
    gateway: TestClient[web.Request, web.Application], key: str
) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official SDK pointed at the gateway, as a user would: only the base URL changes."""
    client = openai.AsyncOpenAI(
        base_url=str(gateway.make_url("/v1")), api_key=key, max_retries=0, timeout=20
    )
    yield client
    await client.close()


MakeSdk = Callable[..., Awaitable[openai.AsyncOpenAI]]


@pytest.fixture
async def team_sdk(
    gateway: TestClient[web.Request, web.Application], make_key: Callable[..., Any]
) -> AsyncIterator[MakeSdk]:
    """The SDK with a fresh key of the named team (created, with `limits` on the key, when
    new); every SDK made is closed after the test."""
    made: list[openai.AsyncOpenAI] = []

    async def make(team: str = "team-a", **limits: Any) -> openai.AsyncOpenAI:
        client = openai.AsyncOpenAI(
            base_url=str(gateway.make_url("/v1")),
            api_key=await make_key(team, **limits),
            max_retries=0,
            timeout=20,
        )
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Reply:
    """One scripted upstream answer: a status, headers and a body, or a stream of chunks
    written one by one (then, with `cut`, the connection dropped before the stream's end)."""

    body: bytes = b""
    status: int = 200
    headers: dict[str, str] | None = None
    chunks: list[bytes] | None = None
    cut: bool = False


@dataclass
class ScriptedUpstream:
    """An upstream that answers each request with the next scripted `Reply` (a plain JSON image
    answer when none is left), and counts the requests that reached it."""

    server: TestServer
    replies: list[Reply]
    calls: list[str]

    @property
    def url(self) -> str:
        return str(self.server.make_url("/v1"))


@pytest.fixture
async def scripted_upstream(aiohttp_server: Any) -> ScriptedUpstream:
    replies: list[Reply] = []
    calls: list[str] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        await request.read()
        calls.append(request.path_qs)
        reply = replies.pop(0) if replies else Reply(b'{"created": 1, "data": []}')
        headers = {"Content-Type": "application/json", **(reply.headers or {})}
        if reply.chunks is None:
            return web.Response(status=reply.status, body=reply.body, headers=headers)
        response = web.StreamResponse(status=reply.status, headers=headers)
        await response.prepare(request)
        for chunk in reply.chunks:
            await response.write(chunk)
        if reply.cut:
            assert request.transport is not None
            request.transport.close()  # flushes what was written, then ends mid-stream
            return response
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    server = await aiohttp_server(app)
    return ScriptedUpstream(server, replies, calls)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A migrated store in a fresh SQLite file (modules that need more override it)."""
    opened = open_store(f"sqlite:///{tmp_path / 'g.db'}")
    await opened.connect()
    await opened.migrate()
    yield opened
    await opened.close()
