"""The request fields the gateway itself relies on, read once from the body and checked.

Only these fields are judged here; every other field, known or not, is left for upstream. What
holds for an `ImageParams`: every text is valid Unicode (it can be stored, logged and compared),
short, and every number is a whole number within the bounds the API documents. So nothing the
client sent can make a later stage, the ledger write included, fail after upstream answered.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.errors import GatewayError, invalid_request
from gateway.pricing import MAX_GIF_FRAMES
from gateway.pricing.table import parse_size

# Bounds from the API reference: n is 1-10, partial_images 0-3, frame_count (GIF) 2-16.
N_RANGE = (1, 10)
PARTIAL_IMAGES_RANGE = (0, 3)
FRAME_COUNT_RANGE = (2, MAX_GIF_FRAMES)
MAX_TEXT_CHARS = 256  # model names, sizes, qualities: a few dozen characters at most
MAX_JSON_DEPTH = 64  # the API's documents nest three or four levels
# The longest side a `WxH` size may ask for: four times the largest any model makes (3840). A
# larger one could only make an estimate past what the books can hold.
MAX_IMAGE_SIDE = 16_384


@dataclass(frozen=True, slots=True)
class ImageParams:
    """The checked fields of an images request. `model` is None only when the request named no
    model and the gateway may forward it so (see `inspect_request`)."""

    model: str | None
    prompt: str
    n: int
    stream: bool
    size: str | None
    quality: str | None
    partial_images: int
    output_format: str | None
    frame_count: int | None
    complexity: str | None
    input_fidelity: str | None
    svg_model: str | None


def read_params(fields: Mapping[str, Any], model: str | None) -> ImageParams:
    """Check and type the fields (a JSON object, or a form's fields as strings)."""
    svg = _svg_object(fields)
    svg_model = None
    if svg is not None:
        if not isinstance(svg, Mapping):
            raise invalid_request("'svg' must be an object.", code="invalid_value", param="svg")
        svg_model = text(svg, "model", where="svg.model")
    prompt = fields.get("prompt")
    return ImageParams(
        model=model,
        prompt=prompt if isinstance(prompt, str) else "",
        n=whole_number(fields, "n", N_RANGE, default=1),
        stream=truthy(fields.get("stream")),
        size=image_size(fields),
        quality=text(fields, "quality"),
        partial_images=whole_number(fields, "partial_images", PARTIAL_IMAGES_RANGE, default=0),
        output_format=text(fields, "output_format"),
        frame_count=whole_number(fields, "frame_count", FRAME_COUNT_RANGE, default=None),
        complexity=text(fields, "complexity"),
        input_fidelity=text(fields, "input_fidelity"),
        svg_model=svg_model,
    )


def _svg_object(fields: Mapping[str, Any]) -> Any:
    """`svg` as an object, however it came: JSON's object; in a form, a field holding JSON, or
    the SDK's flattened `svg[model]` field. So the author it names is checked in every form."""
    svg = fields.get("svg")
    if isinstance(svg, str) and svg.strip().startswith("{"):
        try:
            svg = json.loads(svg)
        except ValueError:
            raise invalid_request(
                "'svg' must be a JSON object.", code="invalid_value", param="svg"
            ) from None
    if svg is None and "svg[model]" in fields:
        svg = {"model": fields["svg[model]"]}
    return svg


def image_size(fields: Mapping[str, Any]) -> str | None:
    """`size` as sent; a `WxH` one has sides of at most MAX_IMAGE_SIDE pixels (any other form,
    `auto` or one the gateway does not know, is upstream's to judge)."""
    size = text(fields, "size")
    dims = None if size is None else parse_size(size)
    if dims is not None and max(dims) > MAX_IMAGE_SIDE:
        raise invalid_request(
            f"'size' {size!r} is too large: at most {MAX_IMAGE_SIDE} pixels a side.",
            code="invalid_value",
            param="size",
        )
    return size


def text(fields: Mapping[str, Any], name: str, *, where: str | None = None) -> str | None:
    """A short, valid-Unicode string field; None when absent, null or empty."""
    param = where or name
    value = fields.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise invalid_request(f"'{param}' must be a string.", code="invalid_value", param=param)
    if len(value) > MAX_TEXT_CHARS:
        raise invalid_request(
            f"'{param}' is too long ({len(value)} characters; at most {MAX_TEXT_CHARS}).",
            code="invalid_value",
            param=param,
        )
    if not is_valid_unicode(value):
        raise invalid_request(
            f"'{param}' is not valid Unicode text (it holds a lone surrogate or bytes that are"
            " not UTF-8).",
            code="invalid_value",
            param=param,
        )
    return value


def is_valid_unicode(value: str) -> bool:
    """True when `value` encodes as UTF-8: no lone surrogates (a JSON "\\ud800", or the bytes
    of a form field that were not UTF-8, kept apart by surrogateescape)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def whole_number(
    fields: Mapping[str, Any], name: str, bounds: tuple[int, int], *, default: int | None
) -> Any:
    """A whole number within `bounds`, written as a JSON integer, an integral float (`2.0`) or a
    form's digits; `default` when absent or null."""
    value = fields.get(name)
    if value is None:
        return default
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        digits = value.strip()
        number = int(digits) if len(digits) <= 9 else None
    low, high = bounds
    if number is None or not low <= number <= high:
        raise invalid_request(
            f"'{name}' must be a whole number from {low} to {high}.",
            code="invalid_value",
            param=name,
        )
    return number


def truthy(value: Any) -> bool:
    """A boolean field: JSON true, or a form's "true" or "1"."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return value is True


def check_depth(document: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """Raise 400 when JSON nests deeper than `limit` (checked without recursion, so a hostile
    document cannot exhaust the stack here or in any later stage that walks it)."""
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > limit:
            raise nested_too_deeply(limit)
        if isinstance(value, dict):
            pending.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)


def nested_too_deeply(limit: int = MAX_JSON_DEPTH) -> GatewayError:
    return invalid_request(f"The JSON body nests deeper than {limit} levels.", code="invalid_json")
