"""Errors in OpenAI's shape, and the response a GatewayError becomes."""

from __future__ import annotations

import json

from gateway.errors import GatewayError, error_body, request_too_large, upstream_unreachable


def test_every_error_has_the_four_fields_the_sdks_read() -> None:
    body = error_body("m", type="invalid_request_error")
    assert body == {
        "error": {"message": "m", "type": "invalid_request_error", "param": None, "code": None}
    }
    assert request_too_large(10).status == 413 and "10 bytes" in request_too_large(10).message
    assert upstream_unreachable("refused").type == "upstream_error"


def test_a_gateway_error_becomes_its_response_with_its_headers() -> None:
    error = GatewayError(429, "slow down", code="rate_limit_exceeded", headers={"retry-after": "3"})
    response = error.response()
    assert response.status == 429 and response.headers["retry-after"] == "3"
    assert response.body is not None
    sent = json.loads(bytes(response.body))  # type: ignore[arg-type]
    assert sent["error"]["code"] == "rate_limit_exceeded"
