"""A batch's result files read line by line, and what each line costs.

Upstream's output file holds the lines that succeeded, its error file those that did not, and the
gateway's own cached-part file the lines the cache answered (see split.py); each line is
`{id, custom_id, response: {status_code, request_id, body}, error}`. They are read as they lie
on disk (blocking: on a thread), keeping of each line only what its ledger row needs and where
it lies in its file (to merge, or to fill the cache, by reading it again), never its images.

What holds: a line is charged from its own `usage` at its model's batch share of the prices;
a line that failed, or never ran, costs $0; a line the cache answered costs $0 and saves what
its entry cost; a 200 without readable usage is charged its estimate (`usage_missing`), as an
online request is; no line is charged above MAX_REQUEST_NANOS.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from gateway.money import MAX_REQUEST_NANOS
from gateway.outcome import Outcome
from gateway.pricing import PriceTable, Usage
from gateway.pricing.charge import per_image_cost_nanos, usage_cost_nanos
from gateway.store.records import BatchLine

CACHE_HIT_REQUEST_ID = "gateway-cache"


class Source(IntEnum):
    OUTPUT = 0  # upstream's output file
    ERRORS = 1  # upstream's error file
    CACHED = 2  # the gateway's: lines answered from the cache


@dataclass(frozen=True, slots=True)
class LineResult:
    custom_id: str
    source: Source
    status: int  # the line's HTTP status; 0 when it got no response (expired, say)
    usage: Usage | None
    usage_unreadable: bool
    images: int
    request_id: str | None
    error_code: str | None
    saved_nanos: int  # a cached line's: what its entry cost
    offset: int  # where the line lies in its file
    length: int

    @property
    def succeeded(self) -> bool:
        return self.status == 200


@dataclass(frozen=True, slots=True)
class LineCharge:
    cost_nanos: int
    outcome: Outcome
    error_code: str | None = None


def read_results(path: Path, source: Source) -> Iterator[LineResult]:
    """Every line of a result file (blocking: iterate it on a thread)."""
    with path.open("rb") as file:
        offset = 0
        for raw in file:
            if raw.strip():
                result = _result(raw, source, offset)
                if result is not None:
                    yield result
            offset += len(raw)


def _result(raw: bytes, source: Source, offset: int) -> LineResult | None:
    try:
        line = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
        return None
    response, error = _object(line.get("response")), _object(line.get("error"))
    body = _object(response.get("body"))
    status = response.get("status_code")
    status = status if isinstance(status, int) else 0
    usage, unreadable = None, False
    if status == 200 and body.get("usage") is not None:
        try:
            usage, _ = Usage.from_api(body["usage"]).bounded()
        except ValueError:
            unreadable = True
    data = body.get("data")
    code = (error or _object(body.get("error"))).get("code")
    saved = _object(line.get("gateway")).get("saved_nanos")
    return LineResult(
        custom_id=line["custom_id"],
        source=source,
        status=status,
        usage=usage,
        usage_unreadable=unreadable,
        images=len(data) if isinstance(data, list) else 0,
        request_id=_text(response.get("request_id")),
        error_code=code if isinstance(code, str) else None,
        saved_nanos=saved if isinstance(saved, int) and saved >= 0 else 0,
        offset=offset,
        length=len(raw),
    )


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value[:200] if isinstance(value, str) else None


def line_charge(table: PriceTable, line: BatchLine, result: LineResult | None) -> LineCharge:
    """What one input line costs, given its result (None: it never ran)."""
    if result is None:
        return LineCharge(0, Outcome.UPSTREAM_ERROR, "not_run")
    if result.source is Source.CACHED:
        return LineCharge(0, Outcome.OK)
    if not result.succeeded:
        return LineCharge(0, Outcome.UPSTREAM_ERROR, result.error_code or "line_failed")
    price = table.lookup(line.model)
    if price is not None and price.per_image_billing and result.usage is None:
        nanos = per_image_cost_nanos(price, line.size, line.quality, result.images, batch=True)
        return LineCharge(min(nanos, MAX_REQUEST_NANOS), Outcome.OK)
    token_price = price
    if price is not None and price.per_image_billing:
        token_price = table.dearest_image_model()
    if result.usage is None or token_price is None:
        return LineCharge(line.estimate_nanos, Outcome.USAGE_MISSING)
    nanos = usage_cost_nanos(token_price, result.usage, batch=True)
    if nanos > MAX_REQUEST_NANOS:
        return LineCharge(MAX_REQUEST_NANOS, Outcome.OK, "usage_out_of_range")
    return LineCharge(nanos, Outcome.OK)
