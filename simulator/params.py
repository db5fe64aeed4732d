"""Validation of Images API requests into an `ImageJob`: what to generate and how to answer.

Rules follow the API reference; where it is silent the simulator is lenient, because the real API
keeps growing: unknown fields are ignored (but still shape the image), unknown models are treated
like GPT image models, an unknown `quality` is priced like "high" and a `size` of any "WxH" is
accepted for GPT image models.

Default model: `dall-e-2` for generations (the reference's stated default) and for variations
(the only model). For edits the reference states no default: the JSON form is GPT-only, so it
defaults to `gpt-image-1`; a multipart edit defaults to `dall-e-2` (the older reference's only
model) unless it carries more than one image or a GPT-only field (`background`,
`input_fidelity`, `moderation`, `output_compression`, `output_format`, `partial_images`,
`stream`, or a `quality` of low/medium/high/auto), in which case it defaults to `gpt-image-1`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from simulator.errors import (
    ApiError,
    invalid_type,
    invalid_value,
    missing_parameter,
    out_of_range,
)
from simulator.usage import (
    COMPLEXITY_TEXT_TOKENS,
    HIGH_FIDELITY_TOKENS,
    PARTIAL_IMAGE_TOKENS,
    SVG_DEFAULT_AUTHOR,
    SVG_OUTPUT_TOKENS,
    SVG_READ_TOKENS,
    SVG_REASONING_TOKENS,
    Usage,
    image_input_tokens,
    output_tokens_per_image,
    quality_tier,
    text_tokens,
)
from simulator.wire import InputImage, RecordedRequest, file_input, json_inputs, json_reference

__all__ = [
    "DEFAULT_GPT_MODEL",
    "ImageJob",
    "InputImage",
    "parse_edit",
    "parse_generation",
    "parse_variation",
]

DEFAULT_GPT_MODEL = "gpt-image-1"
_DALLE2_SIZES = ("256x256", "512x512", "1024x1024")
_DALLE3_SIZES = ("1024x1024", "1792x1024", "1024x1792")
_GPT_SIZES = ("1024x1024", "1024x1536", "1536x1024", "auto")
_EDIT_MODELS = ("dall-e-2", "gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5")
_GPT_QUALITIES = ("low", "medium", "high", "auto")
_GPT_ONLY_FIELDS = (
    "background",
    "input_fidelity",
    "moderation",
    "output_compression",
    "output_format",
    "partial_images",
    "stream",
)
# Fields that change how images are delivered, not what they show: left out of the image seed,
# so a streamed image equals the same request's non-streamed one.
_DELIVERY_FIELDS = frozenset({"n", "stream", "partial_images", "response_format", "user"})
_MAX_EDIT_IMAGES = 16
_PROMPT_LIMITS = {"dall-e-2": 1000, "dall-e-3": 4000, "gpt": 32000}
_SIZE_RE = re.compile(r"^([1-9][0-9]{0,4})x([1-9][0-9]{0,4})$")


@dataclass(frozen=True, slots=True)
class ImageJob:
    """A validated request. `family` is "gpt", "dall-e-2" or "dall-e-3".

    `size`, `quality`, `background` and `output_format` are the values echoed in GPT responses
    (resolved: "auto" size is 1024x1024, "auto" quality is "medium", "auto" background is
    "opaque"); `tier` is the output-token table row. `seed` fingerprints everything that shapes
    the pictures.
    """

    endpoint: str
    model: str
    family: str
    prompt: str | None
    n: int
    size: str
    width: int
    height: int
    quality: str
    tier: str
    background: str
    output_format: str
    response_format: str
    stream: bool
    partial_images: int
    inputs: tuple[InputImage, ...]
    input_fidelity: str | None
    seed: bytes
    frames: int = 1  # GIF output renders this many frames, each an image's worth of tokens
    complexity: str | None = None
    svg_author: str | None = None  # SVG output: the text model that writes it

    @property
    def is_gpt(self) -> bool:
        return self.family == "gpt"

    @property
    def reads_input_at_high_fidelity(self) -> bool:
        """GPT Image 2 and its successors read input images at high fidelity, unasked (the API
        reference: "For gpt-image-2, omit this parameter")."""
        return self.model.startswith("gpt-image-2")

    @property
    def event_prefix(self) -> str:
        return "image_edit" if self.endpoint == "edits" else "image_generation"

    def image_usage(self) -> Usage:
        """Usage of one image: the whole input, and that image's output tokens."""
        text = text_tokens(self.prompt or "")
        image = sum(image_input_tokens(i.width, i.height) for i in self.inputs)
        if self.inputs and (self.input_fidelity == "high" or self.reads_input_at_high_fidelity):
            image += HIGH_FIDELITY_TOKENS
        output = output_tokens_per_image(self.tier, self.width, self.height) * self.frames
        if self.stream:
            output += PARTIAL_IMAGE_TOKENS * self.partial_images
        planning = COMPLEXITY_TEXT_TOKENS.get(self.complexity or "", 0)
        return Usage(text, image, output + planning, planning)

    def usage(self) -> Usage:
        """Usage of the whole request: the input once, n images' output."""
        one = self.image_usage()
        return Usage(
            one.text_tokens,
            one.image_tokens,
            one.output_tokens * self.n,
            one.text_output_tokens * self.n,
        )

    def svg_usage(self) -> dict[str, Any] | None:
        """`svg_usage` for SVG output: the author's own tokens, reasoning inside its output."""
        if self.svg_author is None:
            return None
        read = text_tokens(self.prompt or "") + SVG_READ_TOKENS
        return {
            "model": self.svg_author,
            "input_tokens": read,
            "output_tokens": SVG_OUTPUT_TOKENS,
            "reasoning_tokens": SVG_REASONING_TOKENS,
            "total_tokens": read + SVG_OUTPUT_TOKENS,
        }


class _Params:
    """Typed access to request fields; multipart values are strings and are coerced."""

    def __init__(self, values: dict[str, Any], *, form: bool) -> None:
        self.values = values
        self.form = form

    def get(self, name: str) -> Any:
        # JSON null means "not given", as in the real API.
        return self.values.get(name)

    def has(self, name: str) -> bool:
        return self.get(name) is not None

    def string(self, name: str) -> str | None:
        value = self.get(name)
        if value is not None and not isinstance(value, str):
            raise invalid_type(name, "a string", value)
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.get(name)
        if value is None:
            return default
        if self.form and isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise invalid_type(name, "an integer", value) from None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid_type(name, "an integer", value)
        if not low <= value <= high:
            raise out_of_range(name, value, low, high)
        return value

    def boolean(self, name: str) -> bool:
        value = self.get(name)
        if value is None:
            return False
        if self.form and isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("true", "1"):
                return True
            if lowered in ("false", "0", ""):
                return False
        if not isinstance(value, bool):
            raise invalid_type(name, "a boolean", value)
        return value


def parse_generation(recorded: RecordedRequest) -> ImageJob:
    """Validate `POST /v1/images/generations` (JSON only)."""
    params = _Params(_json_body(recorded, "application/json"), form=False)
    prompt = _prompt(params)
    model = params.string("model") or "dall-e-2"
    return _job("generations", model, prompt, params, (), b"")


def parse_edit(recorded: RecordedRequest) -> ImageJob:
    """Validate `POST /v1/images/edits`: multipart with `image`/`image[]` parts, or JSON."""
    if recorded.is_multipart:
        _require_form(recorded)
        params = _Params(dict(recorded.fields), form=True)
        prompt = _prompt(params)
        files = [f for f in recorded.files if f.field in ("image", "image[]")]
        if not files:
            raise missing_parameter("image")
        model = params.string("model") or _default_edit_model(params, len(files))
        _check_edit_model(model, json_form=False)
        if model == "dall-e-2" and len(files) > 1:
            raise ApiError(
                400,
                f"Invalid 'image': dall-e-2 edits take exactly one image, got {len(files)}.",
                param="image",
                code="invalid_value",
            )
        inputs = tuple(file_input(f) for f in files)
        masks = [f for f in recorded.files if f.field == "mask"]
        mask = hashlib.sha256(masks[0].data).digest() if masks else b""
    elif recorded.is_json or recorded.content_type == "":
        expected = "multipart/form-data or application/json"
        params = _Params(_json_body(recorded, expected), form=False)
        prompt = _prompt(params)
        model = params.string("model") or DEFAULT_GPT_MODEL
        _check_edit_model(model, json_form=True)
        inputs = json_inputs(params.get("images"))
        mask_ref = params.get("mask")
        mask = b"" if mask_ref is None else json_reference(mask_ref, "mask").fingerprint
    else:
        raise _content_type_error(recorded, "multipart/form-data or application/json")
    if _family(model) == "gpt" and len(inputs) > _MAX_EDIT_IMAGES:
        raise ApiError(
            400,
            f"Invalid 'image': array too long. Expected an array with maximum length "
            f"{_MAX_EDIT_IMAGES}, but got an array with length {len(inputs)} instead.",
            param="image",
            code="array_above_max_length",
        )
    return _job("edits", model, prompt, params, inputs, mask)


def parse_variation(recorded: RecordedRequest) -> ImageJob:
    """Validate `POST /v1/images/variations` (multipart, dall-e-2 only)."""
    if not recorded.is_multipart:
        raise _content_type_error(recorded, "multipart/form-data")
    _require_form(recorded)
    params = _Params(dict(recorded.fields), form=True)
    files = [f for f in recorded.files if f.field == "image"]
    if not files:
        raise missing_parameter("image")
    model = params.string("model") or "dall-e-2"
    # Known non-DALL·E-2 models are refused; unknown ones are served as dall-e-2 would be.
    if model == "dall-e-3" or _is_known_gpt(model):
        raise invalid_value("model", model, ("dall-e-2",))
    inputs = (file_input(files[0]),)
    return _job("variations", model, None, params, inputs, b"", family="dall-e-2")


def _job(
    endpoint: str,
    model: str,
    prompt: str | None,
    params: _Params,
    inputs: Sequence[InputImage],
    extra_seed: bytes,
    *,
    family: str | None = None,
) -> ImageJob:
    family = family or _family(model)
    if prompt is not None and len(prompt) > _PROMPT_LIMITS[family]:
        limit = _PROMPT_LIMITS[family]
        raise ApiError(
            400,
            f"Invalid 'prompt': string too long. Expected a string with maximum length {limit}, "
            f"but got a string with length {len(prompt)} instead.",
            param="prompt",
            code="string_above_max_length",
        )
    n = params.integer("n", 1, 1, 10)
    if family == "dall-e-3" and n != 1:
        raise ApiError(400, "You must provide n=1 for this model.", param="n", code="invalid_value")
    stream = params.boolean("stream")
    if stream and family != "gpt":
        raise ApiError(
            400,
            f"Invalid value for 'stream': model '{model}' does not support streaming.",
            param="stream",
            code="invalid_value",
        )
    partial_images = params.integer("partial_images", 0, 0, 3)
    size, width, height = _size(params, family)
    quality = params.string("quality") or "auto"
    response_format = "b64_json"
    if family != "gpt":
        response_format = params.string("response_format") or "url"
        if response_format not in ("url", "b64_json"):
            raise invalid_value("response_format", response_format, ("url", "b64_json"))
    background = params.string("background") or "auto"
    output_format = params.string("output_format") or "png"
    frames = params.integer("frame_count", 9, 2, 16) if output_format == "gif" else 1
    complexity = params.string("complexity")
    svg_author = None
    if output_format == "svg":
        svg = params.get("svg")
        named = svg.get("model") if isinstance(svg, dict) else None
        svg_author = named if isinstance(named, str) and named else SVG_DEFAULT_AUTHOR
    canonical = {
        key: value
        for key, value in params.values.items()
        if key not in _DELIVERY_FIELDS and key not in ("model", "images", "mask")
    }
    seed = hashlib.sha256(
        json.dumps([endpoint, model, canonical], sort_keys=True, default=str).encode()
    )
    for item in inputs:
        seed.update(item.fingerprint)
    seed.update(extra_seed)
    return ImageJob(
        endpoint=endpoint,
        model=model,
        family=family,
        prompt=prompt,
        n=n,
        size=size,
        width=width,
        height=height,
        quality="medium" if quality == "auto" else quality,
        tier=quality_tier(quality, above_high=model.startswith("gpt-image-2")),
        background="opaque" if background == "auto" else background,
        output_format=output_format,
        response_format=response_format,
        stream=stream,
        partial_images=partial_images,
        inputs=tuple(inputs),
        input_fidelity=params.string("input_fidelity"),
        seed=seed.digest(),
        frames=frames,
        complexity=complexity,
        svg_author=svg_author,
    )


def _check_edit_model(model: str, *, json_form: bool) -> None:
    # dall-e-3 cannot edit; the JSON form (image references) exists for GPT image models only.
    if model == "dall-e-3" or (json_form and model == "dall-e-2"):
        raise invalid_value("model", model, _EDIT_MODELS[1:] if json_form else _EDIT_MODELS)


def _family(model: str) -> str:
    return model if model in ("dall-e-2", "dall-e-3") else "gpt"


def _is_known_gpt(model: str) -> bool:
    return model.startswith(("gpt-image-", "chatgpt-image-"))


def _default_edit_model(params: _Params, image_count: int) -> str:
    gpt_only = any(params.has(name) for name in _GPT_ONLY_FIELDS)
    if image_count > 1 or gpt_only or params.get("quality") in _GPT_QUALITIES:
        return DEFAULT_GPT_MODEL
    return "dall-e-2"


def _prompt(params: _Params) -> str:
    prompt = params.get("prompt")
    if prompt is None:
        raise missing_parameter("prompt")
    if not isinstance(prompt, str):
        raise invalid_type("prompt", "a string", prompt)
    if not prompt:
        raise ApiError(
            400,
            "Invalid 'prompt': empty string. Expected a string with minimum length 1, "
            "but got an empty string instead.",
            param="prompt",
            code="empty_string",
        )
    return prompt


def _size(params: _Params, family: str) -> tuple[str, int, int]:
    size = params.string("size")
    if family in ("dall-e-2", "dall-e-3"):
        allowed = _DALLE2_SIZES if family == "dall-e-2" else _DALLE3_SIZES
        size = size or "1024x1024"
        if size not in allowed:
            raise invalid_value("size", size, allowed)
    elif size is None or size == "auto":
        size = "1024x1024"
    match = _SIZE_RE.match(size)
    if match is None:
        raise invalid_value("size", size, _GPT_SIZES)
    return size, int(match.group(1)), int(match.group(2))


def _json_body(recorded: RecordedRequest, expected: str) -> dict[str, Any]:
    if recorded.json is not None:
        return recorded.json
    if recorded.json_error == "not an object":
        raise ApiError(400, "The request body must be a JSON object.")
    if recorded.json_error is not None or recorded.is_json or recorded.content_type == "":
        raise ApiError(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
            "but what was sent was not valid JSON.)",
        )
    raise _content_type_error(recorded, expected)


def _content_type_error(recorded: RecordedRequest, expected: str) -> ApiError:
    sent = recorded.content_type or "none"
    return ApiError(400, f"Invalid Content-Type header ({sent}), expected {expected}.")


def _require_form(recorded: RecordedRequest) -> None:
    if recorded.form_error is not None:
        raise ApiError(400, f"Invalid multipart/form-data body: {recorded.form_error}.")
