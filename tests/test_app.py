"""The app's wiring, on mocked requests (no server): every request gets an id, whatever goes
wrong before a response started becomes an OpenAI-shaped error, and /v1 paths outside images are
refused as unknown."""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway.app import not_images, openai_errors, request_id
from gateway.errors import GatewayError


async def test_every_response_says_its_request_id_and_refusals_cost_nothing() -> None:
    request = make_mocked_request("POST", "/v1/images/generations")

    async def refuse(request: web.Request) -> web.StreamResponse:
        return GatewayError(400, "no", code="invalid_value").response()

    response = await request_id(request, refuse)
    rid = response.headers["x-gateway-request-id"]
    assert rid.startswith("req_gw_") and response.headers["x-request-id"] == rid
    assert response.headers["x-gateway-cost-usd"] == "0.00"
    assert response.headers["x-gateway-cache"] == "bypass"


@pytest.mark.parametrize(
    ("raised", "status", "code"),
    [
        (web.HTTPNotFound(), 404, "unknown_url"),
        (web.HTTPMethodNotAllowed("PUT", ["POST"]), 405, "method_not_allowed"),
        (GatewayError(429, "slow down", code="rate_limit_exceeded"), 429, "rate_limit_exceeded"),
        (RuntimeError("a bug"), 500, None),
    ],
)
async def test_errors_take_openais_shape(raised: Exception, status: int, code: str | None) -> None:
    request = make_mocked_request("PUT", "/v1/images/x")

    async def fails(request: web.Request) -> web.StreamResponse:
        raise raised

    response = await openai_errors(request, fails)
    assert isinstance(response, web.Response) and response.status == status
    assert response.body is not None
    error = json.loads(bytes(response.body))["error"]  # type: ignore[arg-type]
    assert error["code"] == code and error["message"]


async def test_only_images_are_served_under_v1() -> None:
    with pytest.raises(GatewayError) as refused:
        await not_images(make_mocked_request("POST", "/v1/chat/completions"))
    assert refused.value.status == 404 and "/v1/images/" in refused.value.message
