"""OpenAI-shaped errors for the simulator: `{"error": {"message", "type", "param", "code"}}`.

Messages follow the wording the real API uses for the same mistakes, so that clients and the
gateway see realistic text; exact wording upstream may drift.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from aiohttp import web

__all__ = [
    "ApiError",
    "invalid_type",
    "invalid_value",
    "missing_parameter",
    "out_of_range",
    "simulated_status_error",
]

_SERVER_MESSAGES = {
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.",
    503: "The server is overloaded or not ready yet.",
    504: "Gateway timeout.",
}


class ApiError(Exception):
    """An error the simulator answers with, in the API's shape (`{"error": {"message", "type",
    "param", "code"}}`), pretty-printed as the real API prints its bodies."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type = status, message, type
        self.code, self.param, self.headers = code, param, dict(headers or {})

    def body(self) -> dict[str, dict[str, str | None]]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> web.Response:
        return web.Response(
            status=self.status,
            body=json.dumps(self.body(), indent=2).encode(),
            content_type="application/json",
            headers=self.headers,
        )


def missing_parameter(param: str) -> ApiError:
    return ApiError(
        400,
        f"Missing required parameter: '{param}'.",
        param=param,
        code="missing_required_parameter",
    )


def invalid_type(param: str, expected: str, value: Any) -> ApiError:
    return ApiError(
        400,
        f"Invalid type for '{param}': expected {expected}, but got {_json_kind(value)} instead.",
        param=param,
        code="invalid_type",
    )


def invalid_value(param: str, value: Any, supported: Iterable[str]) -> ApiError:
    choices = [f"'{choice}'" for choice in supported]
    if len(choices) > 1:
        listed = ", ".join(choices[:-1]) + (", and " if len(choices) > 2 else " and ") + choices[-1]
    else:
        listed = "".join(choices)
    return ApiError(
        400,
        f"Invalid value: '{value}'. Supported values are: {listed}.",
        param=param,
        code="invalid_value",
    )


def out_of_range(param: str, value: int, low: int, high: int) -> ApiError:
    if value < low:
        return ApiError(
            400,
            f"Invalid '{param}': integer below minimum value. "
            f"Expected a value >= {low}, but got {value} instead.",
            param=param,
            code="integer_below_min_value",
        )
    return ApiError(
        400,
        f"Invalid '{param}': integer above maximum value. "
        f"Expected a value <= {high}, but got {value} instead.",
        param=param,
        code="integer_above_max_value",
    )


def simulated_status_error(status: int) -> ApiError:
    """The error answered for the `error:<status>` fault, typed the way OpenAI types it."""
    if status == 429:
        return ApiError(
            429,
            "Rate limit reached for requests (simulated). Please try again in 1s.",
            type="requests",
            code="rate_limit_exceeded",
            headers={"retry-after": "1"},
        )
    if status >= 500:
        message = _SERVER_MESSAGES.get(status, f"Simulated server error ({status}).")
        return ApiError(status, message, type="server_error")
    if status == 401:
        return ApiError(401, "Incorrect API key provided (simulated).", code="invalid_api_key")
    return ApiError(status, f"Simulated upstream error ({status}).")


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
