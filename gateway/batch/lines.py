"""A batch's input file, checked line by line as the online endpoint checks each request, and
estimated at the model's batch share of its prices.

Each line is `{custom_id, method: "POST", url, body}`: `custom_id` a unique non-empty string,
`url` an image endpoint (every line the same one), `body` a JSON object whose fields pass the same
checks as an online request's (edge/params.py) and whose model the price table prices
(accounting/quote.py), not streamed. The file is read as it lies on disk, one line at a time.

What holds: a file with a bad line is refused whole, naming the line (400, `param: "line N"`), so
nothing of it is forwarded; every line's estimate is an upper bound of its charge in the usual
case, like an online request's (the online estimate at the batch share, rounded up).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.accounting.quote import json_input_images, quote
from gateway.edge.params import ImageParams, read_params, text
from gateway.errors import GatewayError, invalid_request
from gateway.pricing import PriceTable
from gateway.pricing.charge import batch_share_nanos

# The image endpoints a batch may hold, and their names in the estimate.
IMAGE_URLS = {"/v1/images/generations": "generations", "/v1/images/edits": "edits"}
MAX_CUSTOM_ID = 512  # characters


@dataclass(frozen=True, slots=True)
class CheckedLine:
    number: int  # from 1, as editors count lines
    custom_id: str
    model: str
    size: str | None
    quality: str | None
    cache_key: str | None  # what an identical online request's key would be
    estimate_nanos: int  # at the model's batch share


@dataclass(slots=True)
class CheckedFile:
    url: str | None = None  # the image endpoint every line names (None: an empty file)
    lines: list[CheckedLine] = field(default_factory=list)
    estimate_nanos: int = 0  # the sum of the lines' estimates


# A line's cache key from its endpoint ("generations"), model and body; None: not cached.
KeyOf = Callable[[str, str, dict[str, Any]], str | None]


# A line's fields against its caller's policy: raises 403 for what it may not ask for.
Allow = Callable[[str, ImageParams], None]


def _no_key(endpoint: str, model: str, body: dict[str, Any]) -> str | None:
    return None


def _anything(model: str, params: ImageParams) -> None:
    return None


def check_file(
    path: Path, table: PriceTable, key_of: KeyOf = _no_key, allow: Allow = _anything
) -> CheckedFile:
    """Check the JSONL file at `path` one line at a time (blocking: run it on a thread)."""
    with path.open("rb") as lines:
        return check_lines(lines, table, key_of, allow)


def check_lines(
    lines: Iterable[bytes], table: PriceTable, key_of: KeyOf = _no_key, allow: Allow = _anything
) -> CheckedFile:
    """Check every line; the first bad one raises GatewayError (400, or 403 outside the
    caller's policy) naming it. `key_of` gives each line its cache key."""
    checked = CheckedFile()
    seen: set[str] = set()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            line = _check_line(number, raw, table, checked.url, seen, key_of, allow)
        except GatewayError as exc:
            raise _at_line(number, exc) from exc
        checked.url = checked.url or line.url
        checked.lines.append(line.checked)
        checked.estimate_nanos += line.checked.estimate_nanos
    if not checked.lines:
        raise invalid_request("The file has no lines.", code="empty_file", param="file")
    return checked


@dataclass(frozen=True, slots=True)
class _Line:
    url: str
    checked: CheckedLine


def _check_line(
    number: int,
    raw: bytes,
    table: PriceTable,
    url: str | None,
    seen: set[str],
    key_of: KeyOf,
    allow: Allow,
) -> _Line:
    try:
        line = json.loads(raw)
    except ValueError:
        raise invalid_request("This line is not JSON.", code="invalid_json") from None
    if not isinstance(line, dict):
        raise invalid_request("This line is not a JSON object.", code="invalid_json")
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id or len(custom_id) > MAX_CUSTOM_ID:
        raise invalid_request(
            f"'custom_id' must be a non-empty string of at most {MAX_CUSTOM_ID} characters.",
            code="invalid_value",
        )
    if custom_id in seen:
        raise invalid_request(
            f"'custom_id' {custom_id!r} is not unique.", code="duplicate_custom_id"
        )
    seen.add(custom_id)
    if line.get("method") != "POST":
        raise invalid_request("'method' must be \"POST\".", code="invalid_value")
    line_url = line.get("url")
    if not isinstance(line_url, str) or line_url not in IMAGE_URLS:
        raise invalid_request(
            f"'url' {line_url!r} is not an image endpoint: a batch through this gateway holds"
            f" {' or '.join(IMAGE_URLS)} lines.",
            code="unsupported_batch_endpoint",
        )
    if url is not None and line_url != url:
        raise invalid_request(
            f"'url' {line_url!r} differs from the file's first line ({url}): a batch has one"
            " endpoint.",
            code="mismatched_endpoint",
        )
    body = line.get("body")
    if not isinstance(body, dict):
        raise invalid_request("'body' must be a JSON object.", code="invalid_value")
    endpoint = IMAGE_URLS[line_url]
    return _Line(line_url, _estimated(number, custom_id, endpoint, body, table, key_of, allow))


def _estimated(
    number: int,
    custom_id: str,
    endpoint: str,
    body: dict[str, Any],
    table: PriceTable,
    key_of: KeyOf,
    allow: Allow,
) -> CheckedLine:
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise invalid_request(
            "'prompt' must be a non-empty string.", code="invalid_value", param="prompt"
        )
    model = text(body, "model")
    if model is None:
        raise invalid_request(
            "Missing required parameter: 'model'.", code="missing_required_parameter", param="model"
        )
    parsed = read_params(body, model)
    allow(model, parsed)
    if parsed.stream:
        raise invalid_request("Batch lines cannot stream.", code="invalid_value", param="stream")
    if parsed.output_format == "svg":
        raise invalid_request(
            "SVG output is not taken in a batch here: send it as an online request.",
            code="invalid_value",
            param="output_format",
        )
    images = json_input_images(body) if endpoint == "edits" else []
    quoted = quote(table, endpoint, parsed, images)
    assert quoted is not None  # unpriced models are refused in a batch, allowed or not
    nanos = batch_share_nanos(quoted.estimate.nanos, quoted.price.batch)
    key = key_of(endpoint, model, body)
    return CheckedLine(number, custom_id, model, parsed.size, parsed.quality, key, nanos)


def _at_line(number: int, error: GatewayError) -> GatewayError:
    """`error` as the refusal of the whole file, naming its line (and the field, if any)."""
    field_note = f" (field '{error.param}')" if error.param else ""
    return GatewayError(
        error.status,
        f"Line {number}{field_note}: {error.message}",
        type=error.type,
        code=error.code,
        param=f"line {number}",
    )
