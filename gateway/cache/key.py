"""The cache key: SHA-256 over the endpoint and a canonical form of the request.

What holds: two requests get the same key exactly when they ask upstream for the same thing in
the same scope. The key is computed from the body reader's summary (JSON parsed once; multipart
text fields, and each file part's size and SHA-256 taken on the single pass that spooled it), so
a large upload is never read a second time.

- JSON: key order, whitespace and number spelling (`1`, `1.0`, `1e0`) do not matter.
- Multipart: the boundary, file names, part content types and the order of distinct fields do
  not matter; `image` and `image[]` are one field; the order of repeated parts does matter (the
  first image is treated differently upstream).
- Fields that do not change the output (`user`, `safety_identifier`; configurable) are left out.
- A field equal to its documented default is the same as the field omitted; an omitted `model`
  is the endpoint's default model.
- Anything else, including fields the gateway has never seen, is part of the key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.edge.body import SpooledBody

KEY_VERSION = "images-cache/1"  # change it whenever the canonical form changes

# Documented defaults (seeds: Images API reference), so that sending one equals omitting it.
# Only defaults that hold for every model of a family are listed.
_COMMON_DEFAULTS: dict[str, Any] = {"n": 1, "partial_images": 0}
_FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "gpt-image": {
        "background": "auto",
        "moderation": "auto",
        "output_format": "png",
        "quality": "auto",
        "size": "auto",
        "input_fidelity": "low",
    },
    "dall-e-2": {"response_format": "url", "size": "1024x1024"},
    "dall-e-3": {
        "response_format": "url",
        "size": "1024x1024",
        "quality": "standard",
        "style": "vivid",
    },
}


def defaults_for(model: str) -> dict[str, Any]:
    for family, defaults in _FAMILY_DEFAULTS.items():
        if model.startswith(family):
            return _COMMON_DEFAULTS | defaults
    return _COMMON_DEFAULTS


@dataclass(frozen=True, slots=True)
class KeyRequest:
    """What the key is made of, besides the body: where the request goes and in what scope."""

    scope: str  # "team:<id>", "key:<id>" or "global"
    endpoint: str
    query: str
    model: str
    stream: bool


def cache_key(request: KeyRequest, body: SpooledBody, ignored: Iterable[str]) -> str:
    """The hex SHA-256 key of a JSON or multipart request (the body's summary must be complete)."""
    if body.json is not None:
        return json_cache_key(request, body.json, ignored)
    skip = {*ignored, "model", "stream"}  # model and stream enter resolved, below
    return _digest(request, canonical_multipart(body, skip, defaults_for(request.model)))


def json_cache_key(request: KeyRequest, params: Any, ignored: Iterable[str]) -> str:
    """The key of a JSON request whose body is `params` (an online request's, a batch line's)."""
    skip = {*ignored, "model", "stream"}
    return _digest(request, canonical_json(params, skip, defaults_for(request.model)))


def _digest(request: KeyRequest, form: Any) -> str:
    head = [KEY_VERSION, request.scope, request.endpoint, request.query, request.model]
    document = json.dumps(
        [*head, request.stream, form],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=True,
    )
    return hashlib.sha256(document.encode("utf-8", "surrogatepass")).hexdigest()


def canonical_json(params: Any, skip: set[str], defaults: Mapping[str, Any]) -> Any:
    """The request's top-level fields without the skipped ones and those at their default,
    with every number in one spelling."""
    if not isinstance(params, dict):
        return _normal(params)
    form = {}
    for name, value in params.items():
        value = _normal(value)
        if name in skip or (name in defaults and _same(value, defaults[name])):
            continue
        form[name] = value
    return form


def _normal(value: Any) -> Any:
    """One spelling per value: integral floats become ints (`1.0` and `1e0` are `1`)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def _same(value: Any, default: Any) -> bool:
    # `True == 1` in Python, but not in JSON: a bool matches only a bool.
    return type(value) is type(default) and value == default


def canonical_multipart(
    body: SpooledBody, skip: set[str], defaults: Mapping[str, Any]
) -> dict[str, list[Any]]:
    """Fields by name (`x[]` is `x`), each with its values in the order they arrived; files as
    their size and SHA-256."""
    form: dict[str, list[Any]] = {}
    for name, text in body.fields:
        form.setdefault(_field_name(name), []).append(text)
    for part in body.files:
        form.setdefault(_field_name(part.field), []).append(
            {"file": part.sha256, "size": part.size}
        )
    for name in list(form):
        values = form[name]
        if name in skip or (name in defaults and values == [_form_text(defaults[name])]):
            del form[name]
    return form


def _field_name(name: str) -> str:
    return name.removesuffix("[]")


def _form_text(value: Any) -> str:
    """How a default is spelled in a form field (`1`, `auto`, `false`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
