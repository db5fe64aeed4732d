"""What the gateway knows about each Images API endpoint."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An endpoint under /v1/images. `known` ones are checked; others pass through as they are."""

    name: str
    known: bool = True
    media_types: frozenset[str] = frozenset()
    requires_prompt: bool = False


JSON = "application/json"
MULTIPART = "multipart/form-data"

ENDPOINTS: dict[str, Endpoint] = {
    "generations": Endpoint(
        "generations",
        media_types=frozenset({JSON}),
        requires_prompt=True,
    ),
    "edits": Endpoint(
        "edits",
        media_types=frozenset({JSON, MULTIPART}),
        requires_prompt=True,
    ),
    "variations": Endpoint(
        "variations",
        media_types=frozenset({MULTIPART}),
    ),
}


def endpoint_for(tail: str) -> Endpoint:
    """The endpoint for the path below /v1/images/ (`generations`, `edits/…`, …)."""
    return ENDPOINTS.get(tail) or Endpoint(tail, known=False)
