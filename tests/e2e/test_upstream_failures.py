"""A failing upstream (timeouts, unreachable, wrong credentials); the gateway keeps serving."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import openai
import pytest

from gateway.admin import accounts
from gateway.app import create_app
from gateway.proxy.upstream import client_response_headers, upstream_request_headers
from gateway.runtime.state import SERVICES
from gateway.settings import Settings
from tests.conftest import UPSTREAM_KEY, FakeUpstream


async def sdk_for(aiohttp_client: Any, settings: Settings) -> openai.AsyncOpenAI:
    client = await aiohttp_client(create_app(settings))
    store = client.app[SERVICES].store
    await accounts.create_team(store, accounts.TeamCreate(name="t"))
    issued = await accounts.create_key(store, accounts.KeyCreate(team="t"))
    return openai.AsyncOpenAI(
        base_url=str(client.make_url("/v1")), api_key=issued.secret, max_retries=0, timeout=20
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_upstream_is_502_and_the_gateway_keeps_serving(
    aiohttp_client: Any, make_settings: Callable[..., Settings]
) -> None:
    sdk = await sdk_for(
        aiohttp_client, make_settings(upstream_url=f"http://127.0.0.1:{closed_port()}/v1")
    )
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as caught:
            await sdk.images.generate(model="gpt-image-1", prompt="otter")
        assert caught.value.status_code == 502
        assert caught.value.code == "upstream_unreachable"
        assert caught.value.type == "upstream_error"


async def test_upstream_timeout_is_504(
    aiohttp_client: Any, fake_upstream: FakeUpstream, make_settings: Callable[..., Settings]
) -> None:
    sdk = await sdk_for(
        aiohttp_client, make_settings(upstream_url=fake_upstream.url, upstream_read_timeout_s=0.5)
    )
    with pytest.raises(openai.InternalServerError) as caught:
        await sdk.images.generate(
            model="gpt-image-1", prompt="o", extra_headers={"x-simulator-fault": "timeout"}
        )
    assert caught.value.status_code == 504
    assert caught.value.code == "upstream_timeout"
    # and the next request is served normally
    assert (await sdk.images.generate(model="gpt-image-1", prompt="o")).data


async def test_rejected_upstream_key_is_the_operators_problem_and_never_echoed(
    aiohttp_client: Any, fake_upstream: FakeUpstream, make_settings: Callable[..., Settings]
) -> None:
    wrong = "sk-upstream-WRONG-abcdefghijkl"
    sdk = await sdk_for(
        aiohttp_client, make_settings(upstream_url=fake_upstream.url, upstream_api_key=wrong)
    )
    with pytest.raises(openai.InternalServerError) as caught:
        await sdk.images.generate(model="gpt-image-1", prompt="o")
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_auth_failed"
    assert wrong not in str(caught.value.body) and wrong[-4:] not in caught.value.message


def test_request_headers_drop_hop_by_hop_and_the_client_key() -> None:
    headers = upstream_request_headers(
        {
            "Authorization": "Bearer sk-gw-client",
            "Connection": "keep-alive, X-Secret-Hop",
            "X-Secret-Hop": "1",
            "Keep-Alive": "5",
            "Host": "gw",
            "Content-Length": "9",
            "OpenAI-Organization": "org-client",
            "User-Agent": "OpenAI/Python",
            "X-Stainless-Lang": "python",
            "Idempotency-Key": "abc",
        },
        UPSTREAM_KEY,
    )
    assert dict(headers) == {
        "User-Agent": "OpenAI/Python",
        "X-Stainless-Lang": "python",
        "Idempotency-Key": "abc",
        "Authorization": f"Bearer {UPSTREAM_KEY}",
    }


def test_response_headers_keep_request_id_and_drop_account_details() -> None:
    from multidict import CIMultiDict, CIMultiDictProxy

    upstream = CIMultiDictProxy(
        CIMultiDict(
            {
                "x-request-id": "req_1",
                "openai-processing-ms": "12",
                "openai-organization": "org-gateway",
                "x-ratelimit-remaining-requests": "9",
                "Transfer-Encoding": "chunked",
                "Content-Type": "application/json",
                "Set-Cookie": "__cf_bm=1",
                "Content-Length": "10",
            }
        )
    )
    assert dict(client_response_headers(upstream)) == {
        "x-request-id": "req_1",
        "openai-processing-ms": "12",
        "Content-Type": "application/json",
    }
