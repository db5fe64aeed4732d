"""The OpenAPI description of the Files and Batches routes (image batches), in OpenAI's shapes:
merged into the gateway's document by openapi.py."""

from __future__ import annotations

from typing import Any

_ERROR_REF = {"$ref": "#/components/schemas/Error"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": "OK", "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": _error(
        "Malformed request; a bad line of the file (param `line N`); not an image batch"
        " (unsupported_batch_endpoint)"
    ),
    "401": _error("Missing, unknown or revoked gateway key"),
    "404": _error("No such file or batch for the caller's team (another team's: the same)"),
    "405": _error("A method this path does not serve"),
    "408": _error("The request body arrived too slowly"),
    "409": _error("The batch cannot be cancelled in its state"),
    "413": _error("The file is over GATEWAY_BATCH_MAX_FILE_BYTES"),
    "429": _error("The budget cannot hold the batch's estimate (insufficient_quota)"),
    "502": _error("Upstream unreachable"),
    "503": _error("The store cannot record the request now (storage_unavailable)"),
    "504": _error("Upstream timed out"),
    "default": _error("An error upstream answered, passed through"),
}
_FILE = {
    "type": "object",
    "required": ["id", "object", "bytes", "created_at", "filename", "purpose"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "file"},
        "bytes": {"type": "integer"},
        "created_at": {"type": "integer"},
        "filename": {"type": "string"},
        "purpose": {"type": "string"},
        "status": {"type": "string"},
    },
}
_BATCH = {
    "type": "object",
    "required": ["id", "object", "endpoint", "input_file_id", "status", "request_counts"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "batch"},
        "endpoint": {"type": "string"},
        "input_file_id": {"type": "string"},
        "status": {"type": "string"},
        "output_file_id": {"type": ["string", "null"]},
        "error_file_id": {"type": ["string", "null"]},
        "request_counts": {"type": "object"},
        "metadata": {"type": ["object", "null"]},
    },
}
_ENDPOINTS = ["/v1/images/generations", "/v1/images/edits"]


def _page(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["object", "data", "has_more"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": item},
            "has_more": {"type": "boolean"},
        },
    }


def _operation(summary: str, response: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "summary": summary,
        "security": [{"gatewayKey": []}],
        "responses": {"200": _json(response), **_ERRORS},
        **extra,
    }


def _id(name: str) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}]


def _paging(*names: str) -> list[dict[str, Any]]:
    schemas = {
        "limit": {"type": "integer", "minimum": 1, "maximum": 100},
        "after": {"type": "string"},
        "purpose": {"type": "string"},
    }
    return [{"name": n, "in": "query", "required": False, "schema": schemas[n]} for n in names]


def batch_paths() -> dict[str, Any]:
    upload = {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["purpose", "file"],
                "properties": {
                    "purpose": {"const": "batch"},
                    "file": {"type": "string", "format": "binary"},
                },
            }
        }
    }
    create = {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["input_file_id", "endpoint", "completion_window"],
                "properties": {
                    "input_file_id": {"type": "string"},
                    "endpoint": {"type": "string", "enum": _ENDPOINTS},
                    "completion_window": {"const": "24h"},
                    "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            }
        }
    }
    deleted = {"type": "object", "required": ["id", "deleted"]}
    content = {
        "description": "The file's bytes (JSONL)",
        "content": {"application/octet-stream": {"schema": {"type": "string"}}},
    }
    return {
        "/v1/files": {
            "post": _operation(
                "Upload a batch input file: every line checked and estimated at batch prices",
                _FILE,
                requestBody={"required": True, "content": upload},
            ),
            "get": _operation(
                "The team's files", _page(_FILE), parameters=_paging("purpose", "after")
            ),
        },
        "/v1/files/{file_id}": {
            "get": _operation("A file of the team's", _FILE, parameters=_id("file_id")),
            "delete": _operation(
                "Delete a file (upstream too)", deleted, parameters=_id("file_id")
            ),
        },
        "/v1/files/{file_id}/content": {
            "get": {
                **_operation("The file's content", {}, parameters=_id("file_id")),
                "responses": {"200": content, **_ERRORS},
            }
        },
        "/v1/batches": {
            "post": _operation(
                "Create an image batch: its estimate held on every budget before upstream",
                _BATCH,
                requestBody={"required": True, "content": create},
            ),
            "get": _operation(
                "The team's batches", _page(_BATCH), parameters=_paging("limit", "after")
            ),
        },
        "/v1/batches/{batch_id}": {
            "get": _operation("A batch of the team's", _BATCH, parameters=_id("batch_id")),
        },
        "/v1/batches/{batch_id}/cancel": {
            "post": _operation(
                "Cancel a batch: its done lines are charged", _BATCH, parameters=_id("batch_id")
            ),
        },
    }
