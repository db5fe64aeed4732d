"""The OpenAPI 3.1 description of the gateway's own API: the client routes with the errors the
gateway adds, the admin routes, and the operations routes.

Served at `GET /openapi.json`; `gateway openapi` prints it, and `docs/openapi.json` is that
output (a test keeps the two equal). Request bodies of the image routes list the fields the
gateway itself checks and allow any other (the API keeps growing; upstream judges the rest).
"""

from __future__ import annotations

import json
from typing import Any

from gateway.accounting.usage_report import GROUPS
from gateway.edge.params import FRAME_COUNT_RANGE, MAX_TEXT_CHARS, N_RANGE, PARTIAL_IMAGES_RANGE
from gateway.ops.openapi_batch import batch_paths
from gateway.ops.openapi_responses import response_paths
from gateway.pricing import load_prices
from gateway.settings import SHIPPED_PRICES

VERSION = "1.0.0"

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
_MONEY = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$", "description": "USD, exact"}
_MONEY_OR_NULL = {"type": ["string", "null"], "pattern": r"^[0-9]+(\.[0-9]+)?$"}
_MONEY_IN = {
    "oneOf": [
        {"type": "string", "pattern": r"^[0-9]{1,9}(\.[0-9]{1,9})?$"},
        {"type": "integer", "minimum": 0, "maximum": 1_000_000_000},
        {"type": "null"},
    ]
}
_PERIOD = {"type": "string", "enum": ["day", "week", "month", "total"]}
_LIMIT = {"type": ["integer", "null"], "minimum": 0, "maximum": 1_000_000}
_TEXT = {"type": "string", "maxLength": MAX_TEXT_CHARS}


def _whole(bounds: tuple[int, int]) -> dict[str, Any]:
    return {"type": "integer", "minimum": bounds[0], "maximum": bounds[1]}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


# What any client route may answer besides success; upstream's own errors pass through too.
_CLIENT_ERRORS = {
    "400": _error("Malformed request, missing or invalid field, unpriced model, bad path"),
    "401": _error("Missing, unknown or revoked gateway key"),
    "405": _error("A method upstream does not serve for this path"),
    "408": _error("The request body arrived too slowly"),
    "413": _error("Body over the gateway's limit"),
    "429": _error("Budget exhausted (insufficient_quota) or rate limit"),
    "502": _error("Upstream unreachable, or it rejected the gateway's credentials"),
    "503": _error("The store cannot record the request now (storage_unavailable)"),
    "504": _error("Upstream timed out"),
    "default": _error("An error upstream answered, passed through as it came"),
}
_ADMIN_ERRORS = {
    "400": _error("Invalid field"),
    "401": _error("Missing or wrong admin token"),
    "403": _error("The admin API is off (no GATEWAY_ADMIN_TOKEN)"),
    "404": _error("No such team or key"),
    "408": _error("The request body arrived too slowly"),
    "409": _error("Name taken"),
    "429": _error("Too many wrong admin credentials from this address lately"),
    "503": _error("The store does not answer now (storage_unavailable)"),
}

# The image models the shipped price table prices; an operator may price more.
_MODELS = sorted(n for n, p in load_prices(SHIPPED_PRICES).models.items() if not p.text_only)
_IMAGE_FIELDS: dict[str, Any] = {
    "prompt": {"type": "string", "minLength": 1, "pattern": r"\S"},
    "model": {"type": "string", "enum": _MODELS},
    "n": _whole(N_RANGE),
    "size": _TEXT,
    "quality": _TEXT,
    "stream": {"type": "boolean"},
    "partial_images": _whole(PARTIAL_IMAGES_RANGE),
    "output_format": _TEXT,
    "frame_count": _whole(FRAME_COUNT_RANGE),
    "complexity": _TEXT,
    "svg": {"type": "object", "properties": {"model": _TEXT}},
}
_IMAGES_RESPONSE = {
    "type": "object",
    "properties": {
        "created": {"type": "integer"},
        "data": {"type": "array", "items": {"type": "object"}},
        "usage": {"type": "object"},
        "svg_usage": {"type": "object"},
    },
}
_IMAGE_SUCCESS = {
    "description": "Images (JSON), or an event stream when `stream` is true. Headers say what"
    " the request cost and whether the cache answered it.",
    "headers": {
        "x-gateway-cost-usd": {"schema": _MONEY},
        "x-gateway-cache": {
            "schema": {"type": "string", "enum": ["hit", "miss", "bypass", "coalesced"]}
        },
    },
    "content": {
        "application/json": {"schema": _IMAGES_RESPONSE},
        # Each event's `data` is JSON (an images event); schemathesis checks events as
        # objects, so no schema is stated beyond the media type.
        "text/event-stream": {},
    },
}


def _image_operation(summary: str, content: dict[str, Any]) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "security": [{"gatewayKey": []}],
            "requestBody": {"required": True, "content": content},
            "responses": {"200": _IMAGE_SUCCESS, **_CLIENT_ERRORS},
        }
    }


def _form(required: list[str], files: list[str], fields: list[str]) -> dict[str, Any]:
    properties: dict[str, Any] = {name: {"type": "string", "format": "binary"} for name in files}
    properties.update({name: _IMAGE_FIELDS[name] for name in fields})
    return {
        "multipart/form-data": {
            "schema": {"type": "object", "required": required, "properties": properties}
        }
    }


def _admin(
    method: str,
    summary: str,
    response: dict[str, Any],
    *,
    status: str = "200",
    body: dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "security": [{"adminToken": []}],
        "responses": {status: _json(response), **_ADMIN_ERRORS},
    }
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    if parameters:
        operation["parameters"] = parameters
    return {method: operation}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema or {"type": "string"}}


_LIMITS = {
    "budget_usd": _MONEY_IN,
    "budget_period": _PERIOD,
    "rpm": _LIMIT,
    "ipm": _LIMIT,
}
_SPEND = {
    "spent_usd": _MONEY,
    "reserved_usd": _MONEY,
    "remaining_usd": _MONEY_OR_NULL,
}
_TEAM = {
    "type": "object",
    "required": ["name", "budget_usd", "budget_period", *_SPEND],
    "properties": {
        "name": {"type": "string"},
        "budget_usd": _MONEY_OR_NULL,
        "budget_period": _PERIOD,
        "rpm": {"type": ["integer", "null"]},
        "ipm": {"type": ["integer", "null"]},
        "created_at": {"type": "string"},
        **_SPEND,
    },
}
_KEY = {
    "type": "object",
    "required": ["id", "team", "prefix", "revoked", *_SPEND],
    "properties": {
        "id": {"type": "string"},
        "team": {"type": "string"},
        "name": {"type": ["string", "null"]},
        "prefix": {"type": "string"},
        "budget_usd": _MONEY_OR_NULL,
        "budget_period": _PERIOD,
        "rpm": {"type": ["integer", "null"]},
        "ipm": {"type": ["integer", "null"]},
        "created_at": {"type": "string"},
        "revoked": {"type": "boolean"},
        "revoked_at": {"type": ["string", "null"]},
        **_SPEND,
    },
}


def _list_of(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["data"],
        "properties": {"data": {"type": "array", "items": item}},
    }


def _controls() -> dict[str, Any]:
    """The operators' controls: webhooks, the audit trail, reconciliation."""
    listed = _list_of({"type": "object"})
    webhook = {
        "type": "object",
        "required": ["url"],
        "properties": {
            "url": {"type": "string", "maxLength": 2000},
            "events": {
                "type": "array",
                "items": {"type": "string", "enum": ["budget.threshold", "budget.exhausted"]},
            },
            "secret": {"type": "string", "minLength": 16, "maxLength": 200},
        },
        "additionalProperties": False,
    }
    return {
        "/admin/webhooks": {
            **_admin("get", "Budget alert webhooks (secrets shortened)", listed),
            **_admin(
                "post",
                "Add a webhook; its secret is shown whole this once",
                {"type": "object", "required": ["id", "secret"]},
                status="201",
                body=webhook,
            ),
        },
        "/admin/webhooks/{id}": {
            **_admin(
                "delete", "Remove a webhook", {"type": "object"}, parameters=[_path_param("id")]
            ),
        },
        "/admin/webhooks/{id}/deliveries": {
            **_admin(
                "get",
                "A webhook's deliveries, newest first",
                listed,
                parameters=[_path_param("id")],
            ),
        },
        "/admin/audit": {
            **_admin(
                "get",
                "Every change, newest first: {at, actor, action, target, before, after}",
                listed,
                parameters=[
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 10000}),
                    _query("action"),
                    _query("target"),
                ],
            ),
        },
        "/admin/reconcile": {
            **_admin(
                "get",
                "The ledger beside upstream's Costs API, per day and model",
                {"type": "object", "required": ["differences"]},
                parameters=[
                    {
                        "name": "since",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string", "format": "date"},
                    },
                    _query("until", {"type": "string", "format": "date"}),
                    _query("tolerance"),
                ],
            ),
        },
    }


def description() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    team_name = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "images-gateway",
            "version": VERSION,
            "description": "A caching, cost-accounting reverse proxy for the OpenAI Images API."
            " Client routes take a gateway key; admin routes the admin token.",
        },
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {
                "gatewayKey": {"type": "http", "scheme": "bearer", "description": "sk-gw-…"},
                "adminToken": {"type": "http", "scheme": "bearer"},
            },
            "schemas": {"Error": _ERROR},
        },
        "paths": {
            "/v1/images/generations": _image_operation(
                "Create images from a prompt",
                {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["prompt", "model"],
                            "properties": _IMAGE_FIELDS,
                        }
                    }
                },
            ),
            "/v1/images/edits": _image_operation(
                "Edit images",
                _form(
                    ["image", "prompt", "model"],
                    ["image", "mask"],
                    ["prompt", "model", "n", "size", "quality"],
                ),
            ),
            "/v1/images/variations": _image_operation(
                "Variations of an image (a retired endpoint upstream)",
                _form(["image"], ["image"], ["model", "n", "size"]),
            ),
            **batch_paths(),
            **response_paths(),
            "/v1/gateway/key": {
                "get": {
                    "summary": "The caller's own key and team: budgets, spend, limits, renewals",
                    "security": [{"gatewayKey": []}],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["key", "team"],
                                "properties": {
                                    "key": {"type": "object", "required": ["id", *_SPEND]},
                                    "team": {"type": "object", "required": ["name", *_SPEND]},
                                },
                            }
                        ),
                        "401": _error("Missing, unknown or revoked gateway key"),
                        "503": _error("The store does not answer now (storage_unavailable)"),
                    },
                }
            },
            "/admin/teams": {
                **_admin("get", "Every team with its spend", _list_of(_TEAM)),
                **_admin(
                    "post",
                    "Create a team",
                    _TEAM,
                    status="201",
                    body={
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": team_name, **_LIMITS},
                        "additionalProperties": False,
                    },
                ),
            },
            "/admin/teams/{name}": {
                **_admin("get", "One team", _TEAM, parameters=[_path_param("name")]),
                **_admin(
                    "patch",
                    "Change a team's budget, period or limits",
                    _TEAM,
                    parameters=[_path_param("name")],
                    body={"type": "object", "properties": _LIMITS, "additionalProperties": False},
                ),
                **_admin(
                    "delete",
                    "Delete a team (409 while it has live keys, unless force=true, which revokes"
                    " them); its ledger rows stay",
                    {
                        "type": "object",
                        "required": ["deleted", "revoked_keys"],
                        "properties": {
                            "deleted": {"type": "string"},
                            "revoked_keys": {"type": "integer"},
                        },
                    },
                    parameters=[
                        _path_param("name"),
                        _query("force", {"type": "string", "enum": ["true", "false"]}),
                    ],
                ),
            },
            "/admin/keys": {
                **_admin(
                    "get", "Keys, of one team or all", _list_of(_KEY), parameters=[_query("team")]
                ),
                **_admin(
                    "post",
                    "Issue a key (its secret is shown this once)",
                    {**_KEY, "required": [*_KEY["required"], "key"]},
                    status="201",
                    body={
                        "type": "object",
                        "required": ["team"],
                        "properties": {"team": {"type": "string"}, "name": _TEXT, **_LIMITS},
                        "additionalProperties": False,
                    },
                ),
            },
            "/admin/keys/{id}": {
                **_admin("get", "One key", _KEY, parameters=[_path_param("id")]),
                **_admin(
                    "patch",
                    "Change a key's name, budget or limits",
                    _KEY,
                    parameters=[_path_param("id")],
                    body={
                        "type": "object",
                        "properties": {"name": _TEXT, **_LIMITS},
                        "additionalProperties": False,
                    },
                ),
                **_admin("delete", "Revoke a key", _KEY, parameters=[_path_param("id")]),
            },
            "/admin/keys/{id}/rotate": _admin(
                "post",
                "A new secret for the key: same id, budgets and history; the old one stops",
                {**_KEY, "required": [*_KEY["required"], "key"]},
                parameters=[_path_param("id")],
            ),
            "/admin/usage": _admin(
                "get",
                "Ledger sums by team, key, model or day (JSON, or CSV with format=csv)",
                {"type": "object"},
                parameters=[
                    _query("team"),
                    _query("key"),
                    _query("model"),
                    _query("since"),
                    _query("until"),
                    _query("tag", {"type": "string", "pattern": r"^[A-Za-z0-9_.-]{1,64}:.+$"}),
                    _query("user"),
                    _query(
                        "group_by",
                        {
                            "anyOf": [
                                {"type": "string", "enum": list(GROUPS)},
                                {"type": "string", "pattern": r"^tag:[A-Za-z0-9_.-]{1,64}$"},
                            ]
                        },
                    ),
                    _query("format", {"type": "string", "enum": ["json"]}),
                ],
            ),
            "/admin/cache/stats": _admin(
                "get", "Cache entries, bytes, hits, savings", {"type": "object"}
            ),
            "/admin/cache/purge": _admin(
                "post",
                "Drop a team's, a key's or every cached entry",
                {
                    "type": "object",
                    "required": ["purged"],
                    "properties": {"purged": {"type": "integer"}},
                },
                body={
                    "type": "object",
                    "properties": {"team": {"type": "string"}, "key": {"type": "string"}},
                    "additionalProperties": False,
                },
            ),
            **_controls(),
            "/healthz": {
                "get": {
                    "summary": "The process serves",
                    "responses": {"200": _json({"type": "object"})},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Store and upstream answer, and shutdown has not begun",
                    "responses": {
                        "200": _json({"type": "object"}),
                        "503": _json({"type": "object"}, "Not ready"),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This description",
                    "responses": {"200": _json({"type": "object"})},
                }
            },
        },
    }


def rendered() -> str:
    return json.dumps(description(), indent=2, ensure_ascii=False) + "\n"
