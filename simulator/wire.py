"""What arrived on the wire: the raw request, its JSON or multipart body, parsed but unjudged;
and an edit's input images, measured.

Multipart bodies are parsed here from the raw bytes (rather than with aiohttp's streaming reader)
so the simulator can keep both the exact body and every part's exact bytes. Multipart files are
measured from their bytes; JSON references only when they are data: URLs (the header is decoded
from the start of the URL); http(s) URLs and file ids are not fetched and count as 1024x1024.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, unquote_to_bytes

from aiohttp import web

from simulator.errors import ApiError, invalid_type, missing_parameter
from simulator.images import image_dimensions
from simulator.usage import DEFAULT_INPUT_SIZE

__all__ = [
    "InputImage",
    "RecordedFile",
    "RecordedRequest",
    "file_input",
    "header_params",
    "json_inputs",
    "json_reference",
    "parse_multipart",
    "read_request",
]

# `; name=value` or `; name="quoted \" value"` in a header such as Content-Disposition.
_PARAM_RE = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
_ESCAPE_RE = re.compile(r"\\(.)")


@dataclass
class RecordedFile:
    """A multipart part that carries a file: its field name, filename, type and exact bytes."""

    field: str
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class RecordedRequest:
    """A request as received. `content_type` is the media type alone, lower-cased ("" if none).

    `json` is set when the body is a JSON object; `json_error` says why a body sent as JSON could
    not be used. `fields` and `files` keep multipart parts in order; `form_error` is set when a
    multipart body could not be parsed.
    """

    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, str]
    content_type: str
    body: bytes
    json: dict[str, Any] | None = None
    fields: list[tuple[str, str]] = field(default_factory=list)
    files: list[RecordedFile] = field(default_factory=list)
    json_error: str | None = None
    form_error: str | None = None

    @property
    def is_json(self) -> bool:
        return self.content_type == "application/json" or self.content_type.endswith("+json")

    @property
    def is_multipart(self) -> bool:
        return self.content_type == "multipart/form-data"


async def read_request(request: web.Request) -> RecordedRequest:
    """Read the whole body of `request` and parse it as JSON or multipart when it says so."""
    body = await request.read()
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    raw_type = request.headers.get("Content-Type", "")
    media_type, params = header_params(raw_type)
    recorded = RecordedRequest(
        method=request.method,
        path=request.path,
        headers=headers,
        query={key: value for key, value in request.query.items()},
        content_type=media_type.lower(),
        body=body,
    )
    # A body without any Content-Type is read as JSON if it parses, as lenient servers do.
    if recorded.is_json or (not recorded.content_type and body.strip()):
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            recorded.json_error = "malformed"
        else:
            if isinstance(parsed, dict):
                recorded.json = parsed
            else:
                recorded.json_error = "not an object"
    elif recorded.is_multipart:
        boundary = params.get("boundary")
        parts = parse_multipart(body, boundary) if boundary else None
        if parts is None:
            recorded.form_error = "could not parse the multipart body"
        else:
            for part_headers, data in parts:
                _add_part(recorded, part_headers, data)
    return recorded


def header_params(value: str) -> tuple[str, dict[str, str]]:
    """Split a header like `form-data; name="image[]"; filename="a.png"` into its parts.

    Parameter names are lower-cased; quoted values are unquoted; RFC 5987 values (`name*=`)
    are decoded and stored under the plain name, taking precedence over it.
    """
    main = value.split(";", 1)[0].strip()
    params: dict[str, str] = {}
    extended: dict[str, str] = {}
    for match in _PARAM_RE.finditer(value):
        name, raw = match.group(1).lower(), match.group(2).strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = _ESCAPE_RE.sub(r"\1", raw[1:-1])
        if name.endswith("*"):
            charset, _, rest = raw.partition("'")
            _, _, encoded = rest.partition("'")
            extended[name[:-1]] = unquote(encoded, encoding=charset or "utf-8", errors="replace")
        else:
            params[name] = raw
    params.update(extended)
    return main, params


def parse_multipart(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]] | None:
    """Split a multipart/form-data body into (headers, exact data) pairs; None if malformed."""
    delimiter = b"--" + boundary.encode("latin-1")
    start = body.find(delimiter)
    if start < 0 or (start > 0 and body[start - 2 : start] != b"\r\n"):
        return None
    parts: list[tuple[dict[str, str], bytes]] = []
    pos = start + len(delimiter)
    while True:
        if body[pos : pos + 2] == b"--":
            return parts  # close delimiter; anything after it is epilogue
        line_end = body.find(b"\r\n", pos)
        if line_end < 0:
            return None
        pos = line_end + 2
        end = body.find(b"\r\n" + delimiter, pos)
        if end < 0:
            return None
        part = body[pos:end]
        if part.startswith(b"\r\n"):
            header_block, data = b"", part[2:]
        else:
            split = part.find(b"\r\n\r\n")
            if split < 0:
                return None
            header_block, data = part[:split], part[split + 4 :]
        headers: dict[str, str] = {}
        for line in header_block.decode("utf-8", errors="replace").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        parts.append((headers, data))
        pos = end + 2 + len(delimiter)


def _add_part(recorded: RecordedRequest, headers: dict[str, str], data: bytes) -> None:
    _, disposition = header_params(headers.get("content-disposition", ""))
    name = disposition.get("name", "")
    filename = disposition.get("filename")
    content_type = headers.get("content-type")
    # A part is a file when it says so with a filename, or carries a non-text media type
    # (some clients send bytes without a filename).
    is_file = filename is not None or (
        content_type is not None and not content_type.lower().startswith("text/")
    )
    if is_file:
        recorded.files.append(RecordedFile(name, filename, content_type, data))
    else:
        recorded.fields.append((name, data.decode("utf-8", errors="replace")))


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


# The request as read, once, by the /v1 middleware (app.py), for every handler.
RECORDED = web.RequestKey("simulator_recorded", RecordedRequest)
