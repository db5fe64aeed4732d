"""The OpenAPI description of the Responses routes (image work through the `image_generation`
tool), in OpenAI's shapes: merged into the gateway's document by openapi.py."""

from __future__ import annotations

from typing import Any

_ERROR_REF = {"$ref": "#/components/schemas/Error"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


_ERRORS = {
    "400": _error(
        "Malformed request; no image tool (not_an_image_request); a hosted tool the gateway"
        " cannot price (unsupported_tool); an unpriced model (model_not_priced)"
    ),
    "401": _error("Missing, unknown or revoked gateway key"),
    "404": _error("No such response (or conversation) for the caller's team"),
    "405": _error("A method this path does not serve"),
    "408": _error("The request body arrived too slowly"),
    "413": _error("Body over the gateway's limit"),
    "415": _error("Not JSON"),
    "429": _error("Budget exhausted (insufficient_quota) or rate limit"),
    "502": _error("Upstream unreachable"),
    "503": _error("The store cannot record the request now (storage_unavailable)"),
    "504": _error("Upstream timed out"),
    "default": _error("An error upstream answered, passed through"),
}
_RESPONSE = {
    "type": "object",
    "required": ["id", "object", "status"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "response"},
        "status": {"type": "string"},
        "output": {"type": "array"},
        "usage": {"type": ["object", "null"]},
        "tool_usage": {"type": ["object", "null"]},
    },
}
_CREATED = {
    "description": "The response (JSON), or an event stream when `stream` is true; headers say"
    " what it cost and whether the cache answered it",
    "headers": {"x-gateway-cost-usd": {"schema": {"type": "string"}}},
    "content": {
        "application/json": {"schema": _RESPONSE},
        "text/event-stream": {},
    },
}
_TOOL = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"type": "string", "enum": ["image_generation", "function", "custom"]},
        "model": {"type": "string"},
        "size": {"type": "string"},
        "quality": {"type": "string"},
        "partial_images": {"type": "integer", "minimum": 0, "maximum": 3},
    },
}


def _id() -> list[dict[str, Any]]:
    return [{"name": "response_id", "in": "path", "required": True, "schema": {"type": "string"}}]


def _read(summary: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "summary": summary,
        "security": [{"gatewayKey": []}],
        "parameters": _id(),
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": schema}}},
            **_ERRORS,
        },
    }


def response_paths() -> dict[str, Any]:
    create = {
        "type": "object",
        "required": ["model", "tools"],
        "properties": {
            "model": {"type": "string"},
            "input": {"type": "string"},
            "tools": {"type": "array", "items": _TOOL, "minItems": 1},
            "stream": {"type": "boolean"},
            "background": {"type": "boolean"},
            "max_output_tokens": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
            "max_tool_calls": {"type": "integer", "minimum": 1, "maximum": 16},
            "previous_response_id": {"type": "string"},
        },
    }
    listed = {"type": "object", "required": ["data"], "properties": {"data": {"type": "array"}}}
    deleted = {"type": "object", "required": ["id", "deleted"]}
    return {
        "/v1/responses": {
            "post": {
                "summary": "A response that can make images: held on every budget (the text"
                " model's part and the image tool's) before upstream, charged both parts",
                "security": [{"gatewayKey": []}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": create}},
                },
                "responses": {"200": _CREATED, **_ERRORS},
            }
        },
        "/v1/responses/{response_id}": {
            "get": _read("A response of the team's", _RESPONSE),
            "delete": _read("Delete a response of the team's", deleted),
        },
        "/v1/responses/{response_id}/cancel": {
            "post": _read("Cancel a background response: charged what it used", _RESPONSE)
        },
        "/v1/responses/{response_id}/input_items": {
            "get": _read("The input items of a response of the team's", listed)
        },
    }
