"""A Responses API request as the gateway reads it: which text model answers, the image tool's
settings, how many images it may make, how large its input is, and what it depends on upstream.

What holds: only requests that can make images are served (their `tools` hold
`image_generation`); a hosted tool the gateway cannot price is refused by name; everything the
estimate rests on is bounded; every other field goes upstream untouched.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.accounting.quote import json_input_images
from gateway.edge.params import ImageParams, read_params
from gateway.errors import invalid_request

IMAGE_TOOL = "image_generation"
# Tools the client runs itself: they cost nothing upstream beyond the tokens that describe them.
CLIENT_TOOLS = frozenset({"function", "custom"})
MAX_TOOL_CALLS = 16  # the most images a response is held for, whatever it says
MAX_OUTPUT_TOKENS = 1_000_000
# Message framing and the like, beyond the input's own bytes: an allowance in tokens.
FRAMING_TOKENS = 64


@dataclass(frozen=True, slots=True)
class ResponseAsk:
    """The parts of a Responses request the gateway relies on."""

    model: str  # the text model
    image_model: str
    image: ImageParams  # the image tool's settings, read as /v1/images/generations reads them
    stream: bool
    background: bool
    previous_response_id: str | None
    conversation: str | None
    max_output_tokens: int | None
    max_images: int
    input_tokens_bound: int  # text: its bytes (a token is at least one byte) and framing
    input_images: list[tuple[int, int] | None] = field(default_factory=list)

    @property
    def self_contained(self) -> bool:
        """Whether the answer depends on the request alone (not on state kept upstream), so an
        identical request may be answered from the cache."""
        return (
            self.previous_response_id is None
            and self.conversation is None
            and not (self.background)
        )


def read_ask(body: Mapping[str, Any], default_image_model: str, max_images: int) -> ResponseAsk:
    """Check and read the request; GatewayError 400 for what the gateway cannot serve."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid_request(
            "Missing required parameter: 'model'.", code="missing_required_parameter", param="model"
        )
    tool = _image_tool(body.get("tools"))
    _check_tool_choice(body.get("tool_choice"))
    stream, background = _flag(body, "stream"), _flag(body, "background")
    if stream and background:
        raise invalid_request(
            "Background responses are not streamed through this gateway: create it with"
            " `background: true` and retrieve it when it is done.",
            code="unsupported_value",
            param="stream",
        )
    image_model = _text(tool, "model", "tools") or default_image_model
    if tool.get("output_format") == "svg":
        raise invalid_request(
            "SVG output from the image tool is not served here: ask /v1/images/generations.",
            code="unsupported_value",
            param="tools",
        )
    tool_fields = {k: v for k, v in tool.items() if k not in ("type", "model", "n")}
    image = read_params({**tool_fields, "stream": stream}, image_model)
    images = _input_images(body.get("input"))
    return ResponseAsk(
        model=model,
        image_model=image_model,
        image=image,
        stream=stream,
        background=background,
        previous_response_id=_text(body, "previous_response_id", "previous_response_id"),
        conversation=_conversation(body.get("conversation")),
        max_output_tokens=_bounded(body, "max_output_tokens", MAX_OUTPUT_TOKENS),
        max_images=_bounded(body, "max_tool_calls", MAX_TOOL_CALLS) or max_images,
        input_tokens_bound=_input_bytes(body) + FRAMING_TOKENS,
        input_images=json_input_images({"images": images}),
    )


def _image_tool(tools: Any) -> dict[str, Any]:
    if tools is not None and not isinstance(tools, list):
        raise invalid_request("'tools' must be an array.", code="invalid_value", param="tools")
    found: dict[str, Any] | None = None
    for index, tool in enumerate(tools or []):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == IMAGE_TOOL:
            found = found or tool
        elif not isinstance(kind, str) or kind not in CLIENT_TOOLS:
            raise invalid_request(
                f"The tool {str(kind)[:60]!r} is a hosted tool this gateway cannot price; it"
                f" serves image work: {IMAGE_TOOL!r}, beside function and custom tools.",
                code="unsupported_tool",
                param=f"tools[{index}]",
            )
    if found is None:
        raise invalid_request(
            "This gateway serves Responses that can make images: add"
            ' {"type": "image_generation"} to `tools`.',
            code="not_an_image_request",
            param="tools",
        )
    return found


def _check_tool_choice(choice: Any) -> None:
    """A forced hosted tool other than the image tool is refused as its tool would be."""
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind is not None and kind not in (IMAGE_TOOL, "allowed_tools", *CLIENT_TOOLS):
        raise invalid_request(
            f"'tool_choice' forces {str(kind)[:60]!r}, a hosted tool this gateway cannot price.",
            code="unsupported_tool",
            param="tool_choice",
        )


def _flag(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise invalid_request(f"'{name}' must be a boolean.", code="invalid_value", param=name)
    return bool(value)


def _text(body: Mapping[str, Any], name: str, param: str) -> str | None:
    value = body.get(name)
    if value is not None and (not isinstance(value, str) or not value or len(value) > 256):
        raise invalid_request(f"'{name}' must be a string.", code="invalid_value", param=param)
    return value


def _conversation(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    if value is not None and (not isinstance(value, str) or not value or len(value) > 256):
        raise invalid_request(
            "'conversation' must be an id.", code="invalid_value", param="conversation"
        )
    return value


def _bounded(body: Mapping[str, Any], name: str, most: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise invalid_request(
            f"'{name}' must be a whole number from 1 to {most}.", code="invalid_value", param=name
        )
    return value


def _input_images(value: Any) -> list[dict[str, Any]]:
    """The input's images (`input_image` parts), as `{image_url}` objects."""
    found: list[dict[str, Any]] = []

    def walk(item: Any) -> None:
        if isinstance(item, list):
            for element in item:
                walk(element)
        elif isinstance(item, dict):
            if item.get("type") == "input_image":
                found.append({"image_url": item.get("image_url")})
            else:
                walk(item.get("content"))

    walk(value)
    return found


def _input_bytes(body: Mapping[str, Any]) -> int:
    """The bytes of what the text model reads, but images' data (counted as images): the
    instructions, the input and the tools' definitions."""
    total = 0

    def walk(item: Any) -> None:
        nonlocal total
        if isinstance(item, str):
            total += len(item.encode("utf-8", "surrogatepass"))
        elif isinstance(item, list):
            for element in item:
                walk(element)
        elif isinstance(item, dict):
            for key, value in item.items():
                if key == "image_url" and isinstance(value, str):
                    continue  # an image part: counted as an image
                walk(value)

    walk(body.get("instructions"))
    walk(body.get("input"))
    tools = body.get("tools")
    if tools:
        total += len(json.dumps(tools))
    return total
