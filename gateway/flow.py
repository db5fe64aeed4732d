"""The per-request context that the pipeline's stages read and fill in, in order."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from gateway.body import SpooledBody
from gateway.endpoints import Endpoint
from gateway.outcome import CacheStatus, Outcome
from gateway.params import ImageParams
from gateway.pricing import ModelPrice, SvgUsage, Usage
from gateway.store import ApiKey, Team

if TYPE_CHECKING:
    from gateway.cache.leader import Leader
    from gateway.cache.policy import CachePlan
    from gateway.services import Services


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks, once authenticate has run: the live key, and the team it spends for."""

    key: ApiKey
    team: Team


@dataclass(slots=True)
class Bill:
    """What the request costs: filled by estimate_cost and reserve_budget before upstream is
    asked, by the relay once the answer has been read, and settled by its one ledger row."""

    price: ModelPrice | None = None
    price_version: str | None = None
    estimate_nanos: int = 0
    # SVG output: the text model that authors it, and the part of the estimate that is its own.
    svg_author: ModelPrice | None = None
    svg_estimate_nanos: int = 0
    reservation_id: int | None = None
    # The input part of the estimate: what a stream cut before any usage came is charged.
    estimate_input: Usage | None = None
    usage: Usage | None = None
    # A stream's usage objects, one per completed (or error) event; `usage` is their sum.
    stream_usages: list[Usage] = field(default_factory=list)
    svg_usage: SvgUsage | None = None
    images: int = 0
    # Partial images streamed since the last completed event (what a cut stream still owes).
    partial_images_pending: int = 0
    # A stream no longer read because its client left and no one else waited for it: upstream
    # may still make (and bill) its images, so it is charged the estimate.
    abandoned: bool = False
    cost_nanos: int = 0
    saved_nanos: int = 0
    recorded: bool = False  # the ledger row is written


@dataclass(slots=True)
class Timings:
    """perf_counter seconds, for the metrics: when the request arrived, when its own upstream
    call was sent and its answer fully read, and when its first stream event went out."""

    started: float = field(default_factory=time.perf_counter)
    upstream_started: float | None = None
    upstream_ended: float | None = None
    first_event_at: float | None = None


@dataclass(slots=True)
class Result:
    """What the client was told and what became of the request (`outcome.py`): set by the stage
    that answers or the error that ends it, read by the ledger row, the metrics and the log
    line alike. `stream_open` and `client_gone` are live state the metrics count."""

    status: int = 0
    outcome: Outcome = Outcome.OK
    error_code: str | None = None  # the code of the gateway's own error response, if any
    cache_status: CacheStatus = CacheStatus.BYPASS  # what `x-gateway-cache` says
    response_headers: dict[str, str] = field(default_factory=dict)
    stream_open: bool = False  # among the open streams
    client_gone: bool = False


@dataclass(slots=True)
class Flow:
    """One request's way through the gateway.

    Each field is None (or its default) until the stage that fills it has run: `caller` after
    authenticate, `body` after read_body, `params`/`parsed`/`model`/`stream` after inspect,
    the `bill`'s estimate and reservation after the accounting stages, `upstream` after the
    upstream call, the bill's usage, images and cost once the answer has been read, and the
    `result` once it is answered. The pipeline's ENDING reads what was filled in when the
    request ends, however it ends.
    """

    request: web.Request
    services: Services
    endpoint: Endpoint
    upstream_path: str
    request_id: str

    caller: Caller | None = None  # set by authenticate
    # The request: its body, and what inspect_request parsed of it (once).
    body: SpooledBody | None = None
    params: dict[str, Any] = field(default_factory=dict)
    parsed: ImageParams | None = None  # the checked fields of a known endpoint's request
    # What it costs, and when things happened.
    bill: Bill = field(default_factory=Bill)
    timings: Timings = field(default_factory=Timings)
    # The cache: its plan (key, whether to read and write), and this request's part when it goes
    # upstream to fill a miss.
    cache: CachePlan | None = None
    leader: Leader | None = None
    # Upstream's answer, and a whole body of it read before relaying.
    upstream: aiohttp.ClientResponse | None = None
    response_body: SpooledBody | None = None
    upstream_request_id: str | None = None
    result: Result = field(default_factory=Result)

    # The request as parsed once (by inspect_request); before that, or for a path that is not
    # a known endpoint, what an unparsed request is taken to be.

    @property
    def model(self) -> str | None:
        return None if self.parsed is None else self.parsed.model

    @property
    def stream(self) -> bool:
        return False if self.parsed is None else self.parsed.stream

    @property
    def n(self) -> int:
        return 1 if self.parsed is None else self.parsed.n
