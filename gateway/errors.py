"""Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.

Anything the gateway refuses is raised as a `GatewayError` and turned into a response by the error
middleware, so a stage never builds an error response by hand.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from gateway.outcome import Outcome

# Writing to a client that has gone away raises one of these (aiohttp's
# ClientConnectionResetError is a ConnectionResetError). Not every ConnectionError: a database
# or Redis that refuses a connection raises ConnectionRefusedError, and that is no client leaving.
CLIENT_GONE = (ConnectionResetError, BrokenPipeError)


class CannotStart(Exception):
    """What is in the way of serving, in one line that names the setting or file that moves it
    (printed without a traceback; the process exits non-zero at once)."""


class GatewayError(Exception):
    """A refusal or failure with an HTTP status, OpenAI's error fields, and what it makes of the
    request (`outcome`): by default a 4xx is `invalid`, an `upstream_error` type is
    `upstream_error`, and any other 5xx is `error`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        outcome: Outcome | None = None,
    ) -> None:
        super().__init__(message)
        if outcome is None:
            outcome = (
                Outcome.UPSTREAM_ERROR
                if type == "upstream_error"
                else Outcome.INVALID
                if status < 500
                else Outcome.ERROR
            )
        self.outcome = outcome
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> dict[str, dict[str, str | None]]:
        return error_body(self.message, type=self.type, code=self.code, param=self.param)

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.status, headers=self.headers)


def error_body(
    message: str, *, type: str, code: str | None = None, param: str | None = None
) -> dict[str, dict[str, str | None]]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def invalid_request(message: str, *, code: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, message, code=code, param=param)


def invalid_api_key(message: str) -> GatewayError:
    return GatewayError(401, message, code="invalid_api_key", outcome=Outcome.REFUSED_AUTH)


def request_too_large(limit: int) -> GatewayError:
    return GatewayError(
        413,
        f"Request body is larger than this gateway accepts ({limit} bytes).",
        code="request_too_large",
    )


def upstream_unreachable(detail: str) -> GatewayError:
    return GatewayError(
        502,
        f"The gateway could not reach the upstream API: {detail}",
        type="upstream_error",
        code="upstream_unreachable",
    )


def storage_unavailable(why: str) -> GatewayError:
    """The store (or the disk under it) cannot take what this request must record first; nothing
    went upstream. `why` is for clients: the details (hosts, paths) go to the log only. The SDKs
    retry a 503 on their own."""
    return GatewayError(
        503,
        f"The gateway cannot serve this request right now: {why}. Nothing was sent upstream;"
        " try again shortly.",
        type="server_error",
        code="storage_unavailable",
        headers={"retry-after": "1"},
    )


def upstream_timeout(seconds: float, phase: str = "answer") -> GatewayError:
    return GatewayError(
        504,
        f"The upstream API did not {phase} within {seconds:g} s.",
        type="upstream_error",
        code="upstream_timeout",
    )


def not_found(kind: str, object_id: str, param: str = "id") -> GatewayError:
    """The same answer for an id that does not exist and for another team's: nothing tells
    them apart."""
    return GatewayError(404, f"No such {kind}: '{object_id[:100]}'.", code="not_found", param=param)
