"""Edit inputs: the size used for token counting, and a fingerprint that shapes the output.

Multipart files are measured from their bytes; JSON references can be measured only when they
are data: URLs (the header is decoded from the start of the URL); http(s) URLs and file ids are
not fetched and count as 1024x1024.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from gateway.imageinfo import image_dimensions
from gateway.simulator_errors import ApiError, invalid_type, missing_parameter
from gateway.simulator_tokens import DEFAULT_INPUT_SIZE
from gateway.simulator_wire import RecordedFile

__all__ = ["InputImage", "file_input", "json_inputs", "json_reference"]

# Enough of a data: URL to reach a JPEG frame header behind large EXIF segments.
_DATA_URL_PREFIX = 1 << 20


@dataclass(frozen=True, slots=True)
class InputImage:
    """An edit input: the size used for token counting and a fingerprint of its content."""

    width: int
    height: int
    fingerprint: bytes


def file_input(part: RecordedFile) -> InputImage:
    """A multipart image part; an unreadable header counts as 1024x1024."""
    width, height = image_dimensions(part.data) or DEFAULT_INPUT_SIZE
    return InputImage(width, height, hashlib.sha256(part.data).digest())


def json_inputs(images: Any) -> tuple[InputImage, ...]:
    """The JSON form's `images` value: a non-empty array of references (else ApiError)."""
    if images is None:
        raise missing_parameter("images")
    if not isinstance(images, list):
        raise invalid_type("images", "an array", images)
    if not images:
        raise ApiError(
            400,
            "Invalid 'images': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="images",
            code="empty_array",
        )
    return tuple(json_reference(item, f"images[{i}]") for i, item in enumerate(images))


def json_reference(item: Any, param: str) -> InputImage:
    """An `{image_url}` or `{file_id}` reference; only data: URLs have a readable size."""
    if not isinstance(item, dict):
        raise invalid_type(param, "an object", item)
    url, file_id = item.get("image_url"), item.get("file_id")
    if (url is None) == (file_id is None):
        raise ApiError(
            400,
            f"Invalid '{param}': provide exactly one of 'image_url' or 'file_id'.",
            param=param,
            code="invalid_value",
        )
    reference = url if url is not None else file_id
    if not isinstance(reference, str) or not reference:
        kind = "image_url" if url is not None else "file_id"
        raise invalid_type(f"{param}.{kind}", "a non-empty string", reference)
    size = _data_url_size(reference) if url is not None else None
    width, height = size or DEFAULT_INPUT_SIZE
    tag = b"url:" if url is not None else b"file:"
    return InputImage(width, height, hashlib.sha256(tag + reference.encode()).digest())


def _data_url_size(url: str) -> tuple[int, int] | None:
    if not url.startswith("data:"):
        return None
    comma = url.find(",")
    if comma < 0:
        return None
    meta, payload = url[5:comma], url[comma + 1 : comma + 1 + _DATA_URL_PREFIX]
    if meta.lower().endswith(";base64"):
        payload = payload.strip()
        payload = payload[: len(payload) - len(payload) % 4]
        try:
            head = base64.b64decode(payload)
        except (binascii.Error, ValueError):
            return None
    else:
        head = unquote_to_bytes(payload)
    return image_dimensions(head)
