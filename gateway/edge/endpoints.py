"""What the gateway knows about each Images API endpoint."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from gateway.errors import GatewayError, invalid_request

PREFIX = "/v1/images/"
# Methods upstream serves under /v1/images/: POST for the endpoints, GET for what may come.
FORWARDED_METHODS = frozenset({"GET", "POST"})


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


def upstream_path(raw_path: str) -> str:
    """The path and query to send upstream (below /v1/), from the client's raw request target.

    Only a path that is still under /v1/images/ after normalization goes upstream: a segment
    that is empty (`//`) or a dot segment (`.`, `..`), however percent-encoded, and an encoded
    slash or backslash inside a segment are refused, since upstream or a proxy in between may
    decode and collapse them into another path (with the operator's key). So are the forms some
    servers still read as dot segments: one with a path parameter (`..;x`), with a control
    character (`..%00`), or bytes that are not UTF-8 (`%c0%ae`, an overlong dot): none is a
    name an images path has."""
    path, _, _ = raw_path.partition("?")
    if not path.startswith(PREFIX) or len(path) == len(PREFIX):
        raise invalid_path(raw_path)
    for segment in path[len(PREFIX) :].split("/"):
        if not _plain_segment(segment):
            raise invalid_path(raw_path)
    return raw_path.removeprefix("/v1/")


def _plain_segment(segment: str) -> bool:
    raw, previous = segment.encode("utf-8", "surrogateescape"), b""
    while raw != previous:  # decode until stable: %252e is a dot two decodes away
        previous, raw = raw, unquote_to_bytes(raw)
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in decoded):
        return False
    name = decoded.split(";", 1)[0]
    return name not in ("", ".", "..") and "/" not in decoded and "\\" not in decoded


def invalid_path(raw_path: str) -> GatewayError:
    return invalid_request(
        f"Invalid URL {raw_path[:200]!r}: only paths under /v1/images/ without empty or dot"
        " segments are served.",
        code="invalid_path",
    )


def check_forwarded_method(method: str, endpoint: Endpoint) -> None:
    """Known endpoints take POST; other paths under /v1/images/ GET or POST, nothing else."""
    allowed = {"POST"} if endpoint.known else FORWARDED_METHODS
    if method not in allowed:
        where = f"/v1/images/{endpoint.name}" if endpoint.known else "this path"
        raise GatewayError(
            405, f"Use {' or '.join(sorted(allowed))} for {where}.", code="method_not_allowed"
        )
