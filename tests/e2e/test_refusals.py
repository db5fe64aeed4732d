"""What the gateway itself refuses: each in OpenAI's error shape, and it keeps serving."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gateway.admin import accounts
from gateway.app import create_app
from gateway.runtime.state import SERVICES
from gateway.settings import Settings
from tests.conftest import FakeUpstream, auth

# Starts the servers it tests itself (or needs no fixture's database): run once, not again on
# PostgreSQL.
pytestmark = pytest.mark.one_pass


def assert_openai_error(body: Any, code: str | None) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    assert body["error"]["code"] == code


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "invalid_api_key"),
        ({"Authorization": "Basic abc"}, "invalid_api_key"),
        ({"Authorization": "Bearer sk-gw-unknown"}, "invalid_api_key"),
    ],
)
async def test_missing_or_unknown_key_is_401(
    gateway: Any, fake_upstream: FakeUpstream, headers: dict[str, str], code: str
) -> None:
    response = await gateway.post("/v1/images/generations", json={"prompt": "x"}, headers=headers)
    assert response.status == 401
    assert_openai_error(await response.json(), code)
    assert response.headers["x-request-id"].startswith("req_gw_")
    assert fake_upstream.requests == []


@pytest.mark.parametrize(
    ("path", "data", "content_type", "status", "code"),
    [
        ("/v1/images/generations", b'{"prompt": "x",', "application/json", 400, "invalid_json"),
        ("/v1/images/generations", b'["prompt"]', "application/json", 400, "invalid_json"),
        ("/v1/images/generations", b'{"prompt": "  "}', "application/json", 400, "invalid_value"),
        ("/v1/images/generations", b'{"prompt": 3}', "application/json", 400, "invalid_value"),
        (
            "/v1/images/generations",
            b"prompt=x",
            "application/x-www-form-urlencoded",
            400,
            "unsupported_content_type",
        ),
        ("/v1/images/generations", b'{"prompt": "x"}', "", 400, "unsupported_content_type"),
        (
            "/v1/images/variations",
            b'{"prompt": "x"}',
            "application/json",
            400,
            "unsupported_content_type",
        ),
        (
            "/v1/images/edits",
            b'{"images": []}',
            "application/json",
            400,
            "missing_required_parameter",
        ),
        (
            "/v1/images/generations",
            b'{"prompt": "x", "model": 7}',
            "application/json",
            400,
            "invalid_value",
        ),
    ],
)
async def test_bad_requests_are_400_and_never_reach_upstream(
    gateway: Any,
    fake_upstream: FakeUpstream,
    key: str,
    path: str,
    data: bytes,
    content_type: str,
    status: int,
    code: str,
) -> None:
    headers = auth(key) | ({"Content-Type": content_type} if content_type else {})
    response = await gateway.post(path, data=data, headers=headers)
    assert response.status == status
    assert_openai_error(await response.json(), code)
    assert fake_upstream.requests == []
    # the gateway keeps serving
    ok = await gateway.post(
        "/v1/images/generations", json={"model": "gpt-image-1", "prompt": "x"}, headers=auth(key)
    )
    assert ok.status == 200


async def test_body_over_the_limit_is_413(
    aiohttp_client: Any, fake_upstream: FakeUpstream, make_settings: Callable[..., Settings]
) -> None:
    client = await aiohttp_client(
        create_app(make_settings(upstream_url=fake_upstream.url, max_body_bytes=100_000))
    )
    store = client.app[SERVICES].store
    await accounts.create_team(store, accounts.TeamCreate(name="t"))
    key = (await accounts.create_key(store, accounts.KeyCreate(team="t"))).secret
    response = await client.post(
        "/v1/images/edits",
        data=b"x" * 200_000,
        headers=auth(key) | {"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert response.status == 413
    assert_openai_error(await response.json(), "request_too_large")
    assert fake_upstream.requests == []


async def test_unknown_routes_are_404_and_wrong_methods_405(gateway: Any, key: str) -> None:
    for path in ("/v1/chat/completions", "/nothing"):
        response = await gateway.post(path, json={}, headers=auth(key))
        assert response.status == 404, path
        assert_openai_error(await response.json(), "unknown_url")
    response = await gateway.get("/v1/images/generations", headers=auth(key))
    assert response.status == 405
    assert_openai_error(await response.json(), "method_not_allowed")


async def test_other_images_paths_are_forwarded_as_they_are(
    gateway: Any, fake_upstream: FakeUpstream, key: str
) -> None:
    response = await gateway.get("/v1/images/some/future/thing?limit=3", headers=auth(key))
    # The simulator does not know the path; what matters is that the request reached it as sent.
    assert response.status == 404
    recorded = fake_upstream.requests[-1]
    assert (recorded.method, recorded.path, recorded.query) == (
        "GET",
        "/v1/images/some/future/thing",
        {"limit": "3"},
    )


async def test_health_and_readiness(gateway: Any) -> None:
    assert (await (await gateway.get("/healthz")).json()) == {"status": "ok"}
    ready = await gateway.get("/readyz")
    assert ready.status == 200 and (await ready.json())["store"] == "ok"
