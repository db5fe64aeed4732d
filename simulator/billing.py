"""What the simulator bills, and the organization Costs and Usage APIs that report it, so that the
gateway's reconciliation can be tested against an upstream that keeps its own books.

Every answer that makes images is billed when it is answered: its usage at the simulator's own
copy of the published prices (per 1M tokens), a batch line at half, a response's text model and
image tool each at theirs; a DALL·E answer per image. A prompt holding `[bill-twice]` is billed
twice (a billing fault, for reconciliation to find).

`GET /v1/organization/costs?start_time=&end_time=&bucket_width=1d&group_by=line_item` answers
daily buckets of `{amount: {value, currency}, line_item}` (line_item: the model);
`GET /v1/organization/usage/images` daily buckets of `{images, num_model_requests, model}`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from aiohttp import web

from simulator.state import SIMULATOR_STATE, SimulatorState

BILL_TWICE = "[bill-twice]"
DAY_S = 86400
# USD per 1M tokens: text in, cached text in, image in, cached image in, image out, text out.
_IMAGE = {
    "gpt-image-1": ("5.00", "1.25", "10.00", "2.50", "40.00", "40.00"),
    "gpt-image-1-mini": ("2.00", "0.20", "2.50", "0.25", "8.00", "8.00"),
    "gpt-image-1.5": ("5.00", "1.25", "8.00", "2.00", "32.00", "10.00"),
    "chatgpt-image-latest": ("5.00", "1.25", "8.00", "2.00", "32.00", "10.00"),
}
_GPT_IMAGE_2 = ("5.00", "1.25", "8.00", "2.00", "30.00", "10.00")
# USD per 1M tokens: input, cached input, output.
_TEXT = {
    "gpt-5": ("1.25", "0.125", "10.00"),
    "gpt-5-mini": ("0.25", "0.025", "2.00"),
    "gpt-5-nano": ("0.05", "0.005", "0.40"),
    "gpt-5.1": ("1.25", "0.125", "10.00"),
    "gpt-4.1": ("2.00", "0.50", "8.00"),
    "gpt-4.1-mini": ("0.40", "0.10", "1.60"),
    "gpt-4.1-nano": ("0.10", "0.025", "0.40"),
    "gpt-4o": ("2.50", "1.25", "10.00"),
    "gpt-4o-mini": ("0.15", "0.075", "0.60"),
    "o3": ("2.00", "0.50", "8.00"),
    "o4-mini": ("1.10", "0.275", "4.40"),
}
_PER_IMAGE = {"dall-e-2": Decimal("0.020"), "dall-e-3": Decimal("0.040")}
_MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Bill:
    at: float
    model: str
    usd: Decimal
    images: int


def _rates(model: str) -> tuple[Decimal, ...] | None:
    found = _IMAGE.get(model) or (_GPT_IMAGE_2 if model.startswith("gpt-image-2") else None)
    return None if found is None else tuple(Decimal(r) for r in found)


def image_usd(model: str, usage: dict[str, Any]) -> Decimal:
    """An image usage object (as the API reports it) at the model's prices."""
    rates = _rates(model)
    if rates is None:
        return Decimal(0)
    details = usage.get("input_tokens_details") or {}
    out = usage.get("output_tokens_details") or {}
    text_out = out.get("text_tokens", 0)
    tokens = (
        details.get("text_tokens", 0),
        0,
        details.get("image_tokens", 0),
        0,
        usage.get("output_tokens", 0) - text_out,
        text_out,
    )
    return sum((Decimal(t) * r for t, r in zip(tokens, rates, strict=True)), Decimal(0)) / _MILLION


def text_usd(model: str, usage: dict[str, Any]) -> Decimal:
    rates = _TEXT.get(model)
    if rates is None:
        return Decimal(0)
    cached = (usage.get("input_tokens_details") or {}).get("cached_tokens", 0)
    fresh = usage.get("input_tokens", 0) - cached
    amounts = zip((fresh, cached, usage.get("output_tokens", 0)), rates, strict=True)
    return sum((Decimal(t) * Decimal(r) for t, r in amounts), Decimal(0)) / _MILLION


def bill(state: SimulatorState, model: str, usd: Decimal, images: int, prompt: str = "") -> None:
    times = 2 if BILL_TWICE in prompt else 1
    for _ in range(times):
        state.bills.append(Bill(time.time(), model, usd, images))


def bill_images(
    state: SimulatorState,
    model: str,
    body: dict[str, Any],
    prompt: str,
    share: Decimal = Decimal(1),
) -> None:
    """An images answer (JSON body, or a stream's last completed event's usage)."""
    images = len(body.get("data") or []) or 1
    if model in _PER_IMAGE:
        usd = _PER_IMAGE[model] * images
    else:
        usd = image_usd(model, body.get("usage") or {})
    bill(state, model, usd * share, images, prompt)


def _buckets(state: SimulatorState, request: web.Request) -> list[tuple[int, dict[str, Bill]]]:
    start = int(request.query.get("start_time", "0"))
    end = int(request.query.get("end_time", str(int(time.time()) + DAY_S)))
    days: dict[int, dict[str, list[Bill]]] = defaultdict(lambda: defaultdict(list))
    for item in state.bills:
        if start <= item.at < end:
            days[int(item.at // DAY_S) * DAY_S][item.model].append(item)
    found = []
    for day in sorted(days):
        merged = {
            model: Bill(
                day, model, sum((b.usd for b in bills), Decimal(0)), sum(b.images for b in bills)
            )
            for model, bills in days[day].items()
        }
        found.append((day, merged))
    return found


async def _costs(request: web.Request) -> web.StreamResponse:
    state = request.app[SIMULATOR_STATE]
    data = [
        {
            "object": "bucket",
            "start_time": day,
            "end_time": day + DAY_S,
            "results": [
                {
                    "object": "organization.costs.result",
                    "line_item": model,
                    "project_id": None,
                    "amount": {"value": float(b.usd), "currency": "usd"},
                }
                for model, b in sorted(models.items())
            ],
        }
        for day, models in _buckets(state, request)
    ]
    return web.json_response({"object": "page", "data": data, "has_more": False, "next_page": None})


async def _image_usage(request: web.Request) -> web.StreamResponse:
    state = request.app[SIMULATOR_STATE]
    data = [
        {
            "object": "bucket",
            "start_time": day,
            "end_time": day + DAY_S,
            "results": [
                {
                    "object": "organization.usage.images.result",
                    "model": model,
                    "images": b.images,
                    "num_model_requests": 1,
                }
                for model, b in sorted(models.items())
            ],
        }
        for day, models in _buckets(state, request)
    ]
    return web.json_response({"object": "page", "data": data, "has_more": False, "next_page": None})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/organization/costs", _costs)
    app.router.add_get("/v1/organization/usage/images", _image_usage)
