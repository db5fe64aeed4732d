"""The Responses API with the `image_generation` tool, as OpenAI serves it, so that the gateway's
Responses support can be tested (and `make run` demonstrated) without an OpenAI account.

`POST /v1/responses` (JSON, `stream: true`, `background: true`), `GET|DELETE /v1/responses/{id}`,
`POST /v1/responses/{id}/cancel`, `GET /v1/responses/{id}/input_items`.

A response whose tools hold `image_generation` makes one image (none when its input holds
`[no-image]`), answered exactly as `/v1/images/generations` answers the tool's model, size,
quality, output format and partial images with the input as its prompt: its usage is reported in
`tool_usage.image_gen`. The text model's own `usage` is the simulator's model: input
ceil(len(text) / 4) + 30 tokens, output 25 tokens plus 128 reasoning tokens for reasoning models
(gpt-5*, o*). A background response is `queued` until `background_ms` after it was created, then
completed when next asked about; `cancel` ends it `cancelled`, charged its input only. The
`cut:<k>` fault cuts a stream after k events.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from simulator.billing import bill, image_usd, text_usd
from simulator.errors import ApiError
from simulator.faults import FAULT
from simulator.params import ImageJob, parse_generation
from simulator.respond import b64, sse, write_stream
from simulator.state import SIMULATOR_STATE, SimulatorState
from simulator.usage import text_tokens
from simulator.wire import RECORDED, RecordedRequest

DEFAULT_IMAGE_TOOL_MODEL = "gpt-image-2.6-sunburst"
NO_IMAGE_MARKER = "[no-image]"
INPUT_OVERHEAD_TOKENS = 30
OUTPUT_TEXT = "Here is the image you asked for."
OUTPUT_TEXT_TOKENS = 25
REASONING_TOKENS = 128
ENDED = ("completed", "failed", "incomplete", "cancelled")


@dataclass
class Stored:
    body: dict[str, Any]  # the response object once complete
    input_items: list[dict[str, Any]]
    background: bool
    done_at: float
    status: str
    making: Any = None  # a background one's, billed when it completes


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/responses", _create)
    app.router.add_get("/v1/responses/{response_id}", _retrieve)
    app.router.add_delete("/v1/responses/{response_id}", _delete)
    app.router.add_post("/v1/responses/{response_id}/cancel", _cancel)
    app.router.add_get("/v1/responses/{response_id}/input_items", _input_items)


def _json(body: dict[str, Any]) -> web.Response:
    return web.Response(body=json.dumps(body, indent=2).encode(), content_type="application/json")


def _input_text(value: Any) -> str:
    """Every text of the input, joined (the image tool's prompt, and what the model reads)."""
    if isinstance(value, str):
        return value
    texts: list[str] = []
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                content = item.get("content")
                if isinstance(content, str):
                    texts.append(content)
                elif isinstance(content, list):
                    texts += [
                        c["text"]
                        for c in content
                        if isinstance(c, dict) and isinstance(c.get("text"), str)
                    ]
                if isinstance(item.get("text"), str):
                    texts.append(item["text"])
    return "\n".join(texts)


def _items_of(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        value = [{"role": "user", "content": [{"type": "input_text", "text": value}]}]
    items = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, dict):
            items.append({"id": f"msg_{secrets.token_hex(12)}", "type": "message",
                          "status": "completed", **item})  # fmt: skip
    return items


def _image_job(tool: dict[str, Any], prompt: str, stream: bool) -> ImageJob:
    body = {
        "model": tool.get("model") or DEFAULT_IMAGE_TOOL_MODEL,
        "prompt": prompt or "an image",
        **{k: tool[k] for k in ("size", "quality", "output_format", "background") if tool.get(k)},
    }
    if stream and tool.get("partial_images"):
        body.update(stream=True, partial_images=tool["partial_images"])
    recorded = RecordedRequest(
        method="POST", path="/v1/images/generations", headers={}, query={},
        content_type="application/json", body=json.dumps(body).encode(), json=body,
    )  # fmt: skip
    return parse_generation(recorded)


def _text_usage(model: str, text: str, *, output: bool = True) -> dict[str, Any]:
    reasoning = REASONING_TOKENS if output and model.startswith(("gpt-5", "o")) else 0
    produced = OUTPUT_TEXT_TOKENS + reasoning if output else 0
    read = text_tokens(text) + INPUT_OVERHEAD_TOKENS
    return {
        "input_tokens": read,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": produced,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": read + produced,
    }


def _tool_usage(job: ImageJob | None) -> dict[str, Any]:
    usage = job.usage() if job is not None else None
    text = usage.text_tokens if usage else 0
    image = usage.image_tokens if usage else 0
    output = usage.output_tokens if usage else 0
    text_out = usage.text_output_tokens if usage else 0
    return {
        "image_gen": {
            "input_tokens": text + image,
            "input_tokens_details": {"text_tokens": text, "image_tokens": image},
            "output_tokens": output,
            "output_tokens_details": {"image_tokens": output - text_out, "text_tokens": text_out},
            "total_tokens": text + image + output,
            "cached_tokens": 0,
            "cached_tokens_details": {"cached_image_tokens": 0, "cached_text_tokens": 0},
        },
        "web_search": {"num_requests": 0},
    }


class _Making:
    """One response being made: its request, its image (if the tool is called), its object."""

    def __init__(self, state: SimulatorState, body: dict[str, Any]) -> None:
        self.state = state
        self.request = body
        self.id = f"resp_{secrets.token_hex(16)}"
        self.created_at = int(time.time())
        self.model = str(body["model"])
        parts = (body.get("instructions"), _input_text(body.get("input")))
        self.text = "\n".join(t for t in parts if isinstance(t, str))
        tools = body.get("tools") or []
        tool = next(
            (t for t in tools if isinstance(t, dict) and t.get("type") == "image_generation"), None
        )
        stream = bool(body.get("stream"))
        self.job = None
        if tool is not None and NO_IMAGE_MARKER not in self.text:
            self.job = _image_job(tool, _input_text(body.get("input")), stream)
        self.image_item_id = f"ig_{secrets.token_hex(16)}"
        self.message_id = f"msg_{secrets.token_hex(16)}"

    def shell(self, status: str) -> dict[str, Any]:
        """The response object without output (as `response.created` and a queued one show)."""
        request = self.request
        return {
            "id": self.id, "object": "response", "created_at": self.created_at,
            "status": status, "model": self.model, "output": [], "usage": None,
            "tool_usage": None, "error": None, "incomplete_details": None,
            "instructions": request.get("instructions"), "metadata": request.get("metadata") or {},
            "parallel_tool_calls": request.get("parallel_tool_calls", True),
            "tool_choice": request.get("tool_choice", "auto"), "tools": request.get("tools") or [],
            "background": bool(request.get("background")), "store": request.get("store", True),
            "previous_response_id": request.get("previous_response_id"),
            "max_output_tokens": request.get("max_output_tokens"),
        }  # fmt: skip

    def image_item(self, done: bool) -> dict[str, Any]:
        item: dict[str, Any] = {"id": self.image_item_id, "type": "image_generation_call",
                                "status": "completed" if done else "in_progress"}  # fmt: skip
        if done and self.job is not None:
            item.update(
                result=b64(self.state.image(self.job, 0)), output_format=self.job.output_format,
                size=self.job.size, quality=self.job.quality, background=self.job.background,
                revised_prompt=self.job.prompt,
            )  # fmt: skip
        return item

    def message_item(self) -> dict[str, Any]:
        return {"id": self.message_id, "type": "message", "role": "assistant",
                "status": "completed", "content": [{"type": "output_text", "text": OUTPUT_TEXT,
                                                    "annotations": []}]}  # fmt: skip

    def bill(self) -> None:
        """The response's text model and its image tool, each at its prices (once)."""
        usage = _text_usage(self.model, self.text)
        bill(self.state, self.model, text_usd(self.model, usage), 0, self.text)
        if self.job is not None:
            image = self.job.usage().to_json()
            bill(self.state, self.job.model, image_usd(self.job.model, image), 1, self.text)

    def complete(self) -> dict[str, Any]:
        body = self.shell("completed")
        output = [self.image_item(True)] if self.job is not None else []
        body.update(
            output=[*output, self.message_item()],
            usage=_text_usage(self.model, self.text),
            tool_usage=_tool_usage(self.job),
        )
        return body

    def events(self) -> Iterator[bytes]:
        """The stream's events, each rendered only when the previous one has been sent."""
        sequence = 0

        def event(kind: str, **payload: Any) -> bytes:
            nonlocal sequence
            sequence += 1
            return sse(kind, {"type": kind, "sequence_number": sequence, **payload})

        yield event("response.created", response=self.shell("in_progress"))
        yield event("response.in_progress", response=self.shell("in_progress"))
        index = 0
        if self.job is not None:
            item = {"item_id": self.image_item_id, "output_index": 0}
            yield event("response.output_item.added", output_index=0, item=self.image_item(False))
            yield event("response.image_generation_call.in_progress", **item)
            yield event("response.image_generation_call.generating", **item)
            for partial in range(self.job.partial_images):
                picture = b64(self.state.image(self.job, 0, partial))
                yield event("response.image_generation_call.partial_image", **item,
                            partial_image_b64=picture, partial_image_index=partial)  # fmt: skip
            yield event("response.image_generation_call.completed", **item)
            yield event("response.output_item.done", output_index=0, item=self.image_item(True))
            index = 1
        message = self.message_item()
        yield event(
            "response.output_item.added", output_index=index, item={**message, "content": []}
        )
        yield event("response.output_text.delta", item_id=self.message_id, output_index=index,
                    content_index=0, delta=OUTPUT_TEXT)  # fmt: skip
        yield event("response.output_item.done", output_index=index, item=message)
        yield event("response.completed", response=self.complete())


async def _create(request: web.Request) -> web.StreamResponse:
    state = request.app[SIMULATOR_STATE]
    body = request[RECORDED].json
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise ApiError(400, "Missing required parameter: 'model'.", param="model")
    previous = body.get("previous_response_id")
    if previous is not None and previous not in state.responses:
        raise ApiError(404, f"Previous response with id '{previous}' not found.",
                       param="previous_response_id")  # fmt: skip
    making = _Making(state, body)
    items = _items_of(body.get("input"))
    if body.get("background"):
        done_at = time.time() + state.config.background_ms / 1000
        stored = Stored(making.complete(), items, True, done_at, "queued", making)
        state.responses[making.id] = stored
        return _json(making.shell("queued"))
    making.bill()
    if body.get("store", True) is not False:
        state.responses[making.id] = Stored(making.complete(), items, False, 0, "completed")
    if body.get("stream"):
        return await write_stream(request, making.events(), request.get(FAULT))
    return _json(making.complete())


def _stored(request: web.Request) -> Stored:
    stored = request.app[SIMULATOR_STATE].responses.get(request.match_info["response_id"])
    if not isinstance(stored, Stored):
        raise ApiError(404, f"Response with id '{request.match_info['response_id']}' not found.")
    if stored.background and stored.status in ("queued", "in_progress"):
        stored.status = "completed" if time.time() >= stored.done_at else "in_progress"
        if stored.status == "completed" and stored.making is not None:
            stored.making.bill()
    return stored


def _shown(stored: Stored) -> dict[str, Any]:
    if stored.status == "completed":
        return stored.body
    body = {**stored.body, "status": stored.status, "output": [], "tool_usage": None}
    if stored.status == "cancelled":  # it read its input before it was stopped
        body["usage"] = _text_usage(stored.body["model"], "", output=False)
    else:
        body["usage"] = None
    return body


async def _retrieve(request: web.Request) -> web.StreamResponse:
    return _json(_shown(_stored(request)))


async def _delete(request: web.Request) -> web.StreamResponse:
    stored = _stored(request)
    del request.app[SIMULATOR_STATE].responses[stored.body["id"]]
    return _json({"id": stored.body["id"], "object": "response", "deleted": True})


async def _cancel(request: web.Request) -> web.StreamResponse:
    stored = _stored(request)
    if not stored.background:
        raise ApiError(400, "Only responses created with background=true can be cancelled.")
    if stored.status in ("queued", "in_progress"):
        stored.status = "cancelled"
        model = stored.body["model"]
        read = _text_usage(model, "", output=False)  # it read its input before it stopped
        bill(request.app[SIMULATOR_STATE], model, text_usd(model, read), 0)
    return _json(_shown(stored))


async def _input_items(request: web.Request) -> web.StreamResponse:
    items = _stored(request).input_items
    return _json({"object": "list", "data": items, "has_more": False,
                  "first_id": items[0]["id"] if items else None,
                  "last_id": items[-1]["id"] if items else None})  # fmt: skip
