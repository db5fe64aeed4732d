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


@dataclass(slots=True)
class Flow:
    """One request's way through the gateway.

    Each field is None (or its default) until the stage that fills it has run: `key`/`team`
    after authenticate, `body` after read_body, `params`/`model`/`stream` after inspect, the
    estimate and reservation after the accounting stages, `upstream` after the upstream call, and
    usage, images and cost once the response has been read. The pipeline's ENDING reads what
    was filled in when the request ends, however it ends.
    """

    request: web.Request
    services: Services
    endpoint: Endpoint
    upstream_path: str
    request_id: str
    started: float = field(default_factory=time.perf_counter)

    key: ApiKey | None = None
    team: Team | None = None
    body: SpooledBody | None = None
    response_body: SpooledBody | None = None  # a whole upstream answer, read before relaying
    params: dict[str, Any] = field(default_factory=dict)
    parsed: ImageParams | None = None  # the checked fields of a known endpoint's request
    model: str | None = None
    stream: bool = False
    upstream: aiohttp.ClientResponse | None = None
    client_gone: bool = False

    # Accounting: filled by estimate_cost, check_rate_limits, reserve_budget and the relay.
    n: int = 1
    price: ModelPrice | None = None
    price_version: str | None = None
    estimate_nanos: int = 0
    # SVG output: the text model that authors it, and the part of the estimate that is its own.
    svg_author: ModelPrice | None = None
    svg_estimate_nanos: int = 0
    reservation_id: int | None = None
    status: int = 0
    outcome: Outcome = Outcome.OK
    error_code: str | None = None  # the code of the gateway's own error response, if any
    usage: Usage | None = None
    svg_usage: SvgUsage | None = None
    images: int = 0
    # Partial images streamed since the last completed event (what a cut stream still owes).
    partial_images_pending: int = 0
    cost_nanos: int = 0
    saved_nanos: int = 0
    # The cache: its plan (key, whether to read and write), and this request's part when it goes
    # upstream to fill a miss. cache_status is what `x-gateway-cache` says.
    cache: CachePlan | None = None
    leader: Leader | None = None
    cache_status: CacheStatus = CacheStatus.BYPASS
    upstream_request_id: str | None = None
    recorded: bool = False
    response_headers: dict[str, str] = field(default_factory=dict)
    # Timing and live state for the metrics (perf_counter seconds): when this request's own
    # upstream call was sent and its answer fully read, when its first stream event went out,
    # and whether it counts among the open streams.
    upstream_started: float | None = None
    upstream_ended: float | None = None
    first_event_at: float | None = None
    stream_open: bool = False
