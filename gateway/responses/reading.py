"""What accounting needs from a Responses answer, whole or streamed, without decoding its images.

A response holds its id and status, the text model's `usage`, the image tool's
`tool_usage.image_gen`, and its output, where each `image_generation_call` item carries an image
in base64 (megabytes). The top-level members are found with the images scanner (usage_scan.py);
image calls are counted by their `"type": "image_generation_call"` (base64 holds no quote, so
the pattern cannot occur inside an image). A stream's `response.completed` (or `.incomplete`,
`.failed`) event carries the whole response: the members are read inside its `response` object
without decoding the output.

What holds: `flow.answer.text_usage` is the text model's usage and `flow.answer.usage` the image
tool's, each None when upstream reported none that can be read; `images` counts the images
delivered; a stream's partial images since its last finished image call are pending (what a cut
stream still owes).
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.edge.body import SpooledBody
from gateway.outcome import Outcome
from gateway.pricing import Usage
from gateway.proxy.flow import Answer, Flow
from gateway.proxy.usage_scan import ScannedObject, event_data, scan_file, scan_object

log = logging.getLogger(__name__)

_MEMBERS = frozenset({"id", "status", "usage", "tool_usage"})
_IMAGE_CALL = re.compile(rb'"type"\s*:\s*"image_generation_call"')
LARGE_SCAN_BYTES = 256 * 1024  # scanned on a thread past this
# The events that end a response stream, with what they make of it.
ENDINGS = {
    "response.completed": Outcome.OK,
    "response.incomplete": Outcome.OK,  # charged what its usage says
    "response.failed": Outcome.UPSTREAM_ERROR,
}


def text_usage(found: Any) -> Usage | None:
    """The text model's `usage`: cached input apart, reasoning inside the output."""
    if found is None:
        return None
    try:
        if not isinstance(found, Mapping):
            raise ValueError("usage is not an object")
        details = found.get("input_tokens_details") or {}
        read, written = found["input_tokens"], found["output_tokens"]
        cached = details.get("cached_tokens") or 0
        for value in (read, written, cached):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"not a token count: {value!r}")
        cached = min(cached, read)
        return Usage(read - cached, cached, 0, 0, 0, written)
    except (KeyError, TypeError, ValueError, AttributeError):
        log.warning("upstream sent a response usage the gateway cannot read: %.300r", found)
        return None


def image_usage(found: Any) -> Usage | None:
    """`tool_usage.image_gen` as the image model bills it."""
    image_gen = found.get("image_gen") if isinstance(found, Mapping) else None
    if image_gen is None:
        return None
    try:
        if not isinstance(image_gen, Mapping):
            raise ValueError("image_gen is not an object")
        cached = image_gen.get("cached_tokens_details") or {}
        shaped = {
            "input_tokens": image_gen.get("input_tokens"),
            "input_tokens_details": {
                **(image_gen.get("input_tokens_details") or {}),
                "cached_tokens_details": {
                    "text_tokens": cached.get("cached_text_tokens"),
                    "image_tokens": cached.get("cached_image_tokens"),
                },
                "cached_tokens": image_gen.get("cached_tokens"),
            },
            "output_tokens": image_gen.get("output_tokens"),
            "output_tokens_details": image_gen.get("output_tokens_details") or {},
        }
        return Usage.from_api(shaped)
    except (TypeError, ValueError, AttributeError):
        log.warning("upstream sent a tool_usage the gateway cannot read: %.300r", found)
        return None


def take_members(answer: Answer, members: Mapping[str, Any]) -> None:
    """The response's id, status and both usages, into the answer."""
    if isinstance(members.get("id"), str):
        answer.response_id = members["id"][:200]
    if isinstance(members.get("status"), str):
        answer.response_status = members["status"][:40]
    if "usage" in members:
        answer.text_usage = text_usage(members["usage"])
    if "tool_usage" in members:
        answer.usage = image_usage(members["tool_usage"])


def count_image_calls(buf: bytes | bytearray | mmap.mmap, start: int = 0, end: int = -1) -> int:
    stop = len(buf) if end < 0 else end
    return sum(1 for _ in _IMAGE_CALL.finditer(buf, start, stop))


def _scan_path(path: Path) -> tuple[ScannedObject, int]:
    found = scan_file(path, decode=_MEMBERS, count=frozenset())
    with path.open("rb") as handle:
        try:
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:
            return found, 0
        with mapped:
            return found, count_image_calls(mapped)


async def read_response_body(flow: Flow, body: SpooledBody) -> None:
    """A whole response (JSON): its members and its images."""
    if body.path is not None:
        found, images = await asyncio.to_thread(_scan_path, body.path)
    else:
        data = body.buffer()
        found = scan_object(data, decode=_MEMBERS)
        images = count_image_calls(data)
    take_members(flow.answer, found.members)
    flow.answer.images = images
    if flow.ask is not None and flow.ask.background:
        flow.answer.pending = flow.answer.response_status in ("queued", "in_progress")


async def inspect_event(flow: Flow, name: str, raw: bytearray) -> bool:
    """Count what the event `name` carries; True when it ends the response (or is an error)."""
    answer = flow.answer
    if name == "response.image_generation_call.partial_image":
        answer.partial_images_pending += 1
    elif name == "response.output_item.done":
        if count_image_calls(raw):
            answer.images += 1
            answer.partial_images_pending = 0
    elif name == "response.created":
        take_members(answer, await _response_members(raw, frozenset({"id", "status"})))
    elif name in ENDINGS:
        take_members(answer, await _response_members(raw, _MEMBERS))
        if ENDINGS[name] is not Outcome.OK:
            answer.outcome = ENDINGS[name]
        return True
    elif name == "error":
        answer.outcome = Outcome.UPSTREAM_ERROR
        return True
    return False


async def _response_members(raw: bytearray, wanted: frozenset[str]) -> dict[str, Any]:
    """The members of the event's `response` object, its output left undecoded."""
    data, start, end = event_data(raw)

    def scan() -> dict[str, Any]:
        outer = scan_object(data, decode=frozenset(), span=frozenset({"response"}),
                            start=start, end=end)  # fmt: skip
        where = outer.spans.get("response")
        if where is None:
            return {}
        return scan_object(data, decode=wanted, start=where[0], end=where[1]).members

    return await asyncio.to_thread(scan) if end - start > LARGE_SCAN_BYTES else scan()
