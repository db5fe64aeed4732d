"""What the admin API's handlers share: reading a JSON body into its model, and naming who
makes a change (for the audit trail)."""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.errors import invalid_request

Model = TypeVar("Model", bound=BaseModel)


async def parse_body(request: web.Request, model: type[Model]) -> Model:
    raw = await request.read()
    try:
        # model_validate_json reads JSON numbers into Decimal fields exactly, never via float.
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        raise invalid_request(
            f"Invalid request: {first['msg']}" + (f" ({param})" if param else ""),
            code="invalid_value",
            param=param,
        ) from exc


def actor(request: web.Request) -> str:
    """Who makes a change through the admin API, for the audit trail."""
    return f"admin-api ({request.remote or 'unknown'})"
