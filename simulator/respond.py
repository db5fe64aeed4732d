"""Writing the simulator's answers: JSON bodies, event streams, and the faults that break them."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from simulator.billing import bill_images
from simulator.faults import Fault
from simulator.params import ImageJob
from simulator.state import SIMULATOR_STATE, SimulatorState

__all__ = [
    "FOREVER_S",
    "answer",
    "b64",
    "drop_connection",
    "image_body",
    "send_half_body",
    "send_headers_and_hang",
    "sleep_while_connected",
    "sse",
    "write_stream",
]

FOREVER_S = 365 * 86400.0
_POLL_S = 0.05  # how often a sleeping handler checks that its client is still there


async def answer(request: web.Request, job: ImageJob, fault: Fault | None) -> web.StreamResponse:
    """Answer `job`: a JSON body, or an event stream (to which `fault` may apply)."""
    if job.stream:
        return await write_stream(request, _events(request.app[SIMULATOR_STATE], job), fault)
    state = request.app[SIMULATOR_STATE]
    body = image_body(state, job, f"{request.scheme}://{request.host}")
    bill_images(state, job.model, body, job.prompt or "")
    # The real API pretty-prints its JSON; so do we.
    return web.Response(body=json.dumps(body, indent=2).encode(), content_type="application/json")


def image_body(state: SimulatorState, job: ImageJob, base_url: str) -> dict[str, Any]:
    """The JSON body of a whole (non-stream) answer to `job`; images answered as `url` are
    served from `base_url`."""
    data: list[dict[str, str]] = []
    for index in range(job.n):
        png = state.image(job, index)
        if job.response_format == "url":
            item = {"url": f"{base_url}/files/{state.store_file(png)}.png"}
        else:
            item = {"b64_json": b64(png)}
        if job.family == "dall-e-3" and job.prompt is not None:
            item["revised_prompt"] = _revised_prompt(job.prompt)
        data.append(item)
    body: dict[str, Any] = {"created": int(time.time())}
    if job.is_gpt:
        body["background"] = job.background
        body["data"] = data
        body["output_format"] = job.output_format
        body["quality"] = job.quality
        body["size"] = job.size
        body["usage"] = job.usage().to_json()
        svg_usage = job.svg_usage()
        if svg_usage is not None:
            body["svg_usage"] = svg_usage
    else:
        body["data"] = data
    return body


async def write_stream(
    request: web.Request, events: Iterator[bytes], fault: Fault | None
) -> web.StreamResponse:
    """Send `events` as an event stream, `partial_interval_ms` apart, with a `cut` or
    `hang-stream` fault applied."""
    config = request.app[SIMULATOR_STATE].config
    cut_at = int(fault.value) if fault is not None and fault.kind == "cut" else None
    hang = fault is not None and fault.kind == "hang-stream"
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    interval = config.partial_interval_ms / 1000
    try:
        await response.prepare(request)
        for index, event in enumerate(events):
            if index and not await sleep_while_connected(request, interval):
                return response
            if index == cut_at:
                await response.write(event[: len(event) // 2])
                drop_connection(request)
                return response
            await response.write(event)
            if hang:
                await sleep_while_connected(request, FOREVER_S)
                return response
        if cut_at is not None:
            # Fewer events than the cut point: end without the stream's terminating chunk.
            drop_connection(request)
            return response
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away mid-stream; nothing left to do
    return response


def _events(state: SimulatorState, job: ImageJob) -> Iterator[bytes]:
    """The stream's events, each rendered only when the previous one has been sent."""
    created_at = int(time.time())
    common = {
        "created_at": created_at,
        "size": job.size,
        "quality": job.quality,
        "background": job.background,
        "output_format": job.output_format,
    }
    whole, share = job.usage().to_json(), job.image_usage().to_json()
    partial_type, completed_type = (
        f"{job.event_prefix}.partial_image",
        f"{job.event_prefix}.completed",
    )
    for index in range(job.n):
        for partial in range(job.partial_images):
            yield sse(
                partial_type,
                {
                    "type": partial_type,
                    "b64_json": b64(state.image(job, index, partial)),
                    "partial_image_index": partial,
                    **common,
                },
            )
        usage = whole if index == job.n - 1 else share
        if index == job.n - 1:  # the whole request is billed with its last image
            bill_images(
                state, job.model, {"usage": whole, "data": [None] * job.n}, job.prompt or ""
            )
        payload = {"type": completed_type, "b64_json": b64(state.image(job, index)), **common}
        yield sse(completed_type, {**payload, "usage": usage})


def sse(event_type: str, payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload, separators=(",", ":"))
    return f"event: {event_type}\ndata: {data}\n\n".encode()


async def send_half_body(request: web.Request, response: web.Response) -> web.StreamResponse:
    """Announce the full Content-Length, send half the body, then drop the connection."""
    body = response.body if isinstance(response.body, bytes) else b""
    truncated = _copy_head(response, len(body))
    with contextlib.suppress(ConnectionResetError):
        await truncated.prepare(request)
        await truncated.write(body[: len(body) // 2])
    drop_connection(request)
    return truncated


async def send_headers_and_hang(request: web.Request, response: web.Response) -> web.StreamResponse:
    """Send the status line and headers of `response`, then no body until the client leaves."""
    body = response.body if isinstance(response.body, bytes) else b""
    hanging = _copy_head(response, len(body))
    with contextlib.suppress(ConnectionResetError):
        await hanging.prepare(request)
        await sleep_while_connected(request, FOREVER_S)
    return hanging


def _copy_head(response: web.Response, length: int) -> web.StreamResponse:
    copy = web.StreamResponse(status=response.status, reason=response.reason)
    for name, value in response.headers.items():
        if name.lower() != "content-length":
            copy.headers.add(name, value)
    copy.content_length = length
    return copy


async def sleep_while_connected(request: web.Request, seconds: float) -> bool:
    """Sleep `seconds`; return False as soon as the client has gone away, else True.

    aiohttp does not cancel handlers when a client disconnects (unless asked to), so a long
    sleep polls the transport to end promptly and free the handler.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        transport = request.transport
        if transport is None or transport.is_closing():
            return False
        remaining = deadline - loop.time()
        if remaining <= 0:
            return True
        await asyncio.sleep(min(remaining, _POLL_S))


def drop_connection(request: web.Request) -> None:
    # close() flushes what was written, then closes: the client sees a clean EOF mid-message.
    if request.transport is not None:
        request.transport.close()


def b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")


def _revised_prompt(prompt: str) -> str:
    return f"{prompt.rstrip('. ')}, rendered in rich detail with balanced composition."
