"""The per-request context that the pipeline's stages read and fill in, in order.

Each part has one writer, so that reading a request's story never means searching for who changed
what: `caller` (authenticate), `body`/`params`/`parsed` (the request stages), `bill` (the
accounting stages: the estimate and the hold), `cache`/`leader` (the cache stages), `upstream` and
`timings` (the relay), `answer` (the source that answered: the relay from upstream, or the cache),
`client` (its own writer), and `result`, computed once by the ending from all of them. The metrics
and the log line read the flow; they never write to it.

This module holds data only: the services and the leader are named by protocols, so nothing here
imports what runs a request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, TypeAlias

import aiohttp
from aiohttp import web

from gateway.edge.body import SpooledBody
from gateway.edge.endpoints import Endpoint
from gateway.edge.params import ImageParams
from gateway.outcome import CacheStatus, Outcome
from gateway.pricing import ModelPrice, SvgUsage, Usage
from gateway.store import ApiKey, Store, Team

if TYPE_CHECKING:
    from prometheus_client import Counter

    from gateway.accounting.journal import LedgerJournal
    from gateway.accounting.quota import Limiter
    from gateway.alerts.thresholds import BudgetChecks
    from gateway.cache.cache import ResponseCache
    from gateway.cache.objects import ObjectBody
    from gateway.cache.policy import CachePlan
    from gateway.pricing import PriceBook
    from gateway.proxy.upstream import Upstream
    from gateway.responses.request import ResponseAsk
    from gateway.runtime.tasks import Tasks
    from gateway.settings import Settings
    from gateway.store.health import WriteHealth

# What a whole answer's body can be: bytes in memory, a spooled upstream body, a cached body's
# open file, or an object-store body read in chunks.
WholeBody: TypeAlias = "bytes | SpooledBody | BinaryIO | ObjectBody"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks, once authenticate has run: the live key, and the team it spends for."""

    key: ApiKey
    team: Team


@dataclass(slots=True)
class Bill:
    """What the request may cost, before upstream is asked: filled by estimate_cost and
    reserve_budget, and settled by the request's one ledger row."""

    price: ModelPrice | None = None
    price_version: str | None = None
    estimate_nanos: int = 0
    # SVG output: the text model that authors it, and the part of the estimate that is its own.
    svg_author: ModelPrice | None = None
    svg_estimate_nanos: int = 0
    reservation_id: int | None = None
    # The input part of the estimate: what a stream cut before any usage came is charged.
    estimate_input: Usage | None = None
    # A Responses request (responses/estimate.py): the text model's prices, and the parts of the
    # estimate a cut stream is charged (the text input; one image of the tool's).
    text_price: ModelPrice | None = None
    text_input_nanos: int = 0
    image_each_nanos: int = 0


@dataclass(slots=True)
class Answer:
    """What the source that answered produced: upstream (read by the relay) or the cache (a hit,
    or a twin's answer). Written by that source only; the ending's result is computed from it.
    """

    status: int = 0  # the status the source answered with (0: none answered)
    # `hit` or `coalesced` when the cache answered; None when upstream did (or no one).
    served: CacheStatus | None = None
    # What the source says became of its answer: `stream_cut` for a stream that ended early,
    # `upstream_error` for an error event; a follower takes its leader's.
    outcome: Outcome = Outcome.OK
    trailer: bytes = b""  # what a stream ends with before the cost comment (a cut's error event)
    upstream_request_id: str | None = None
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
    saved_nanos: int = 0  # a cached answer: what it cost when it was bought
    # A Responses answer: its id and status, and its text model's own usage (`usage` is then the
    # image tool's, from `tool_usage.image_gen`). `pending`: a background response still
    # running, charged when it ends (responses/background.py).
    response_id: str | None = None
    response_status: str | None = None
    text_usage: Usage | None = None
    pending: bool = False


@dataclass(slots=True)
class Timings:
    """perf_counter seconds, for the metrics: when the request arrived, and when its own upstream
    call was sent and its answer fully read (the relay's)."""

    started: float = field(default_factory=time.perf_counter)
    upstream_started: float | None = None
    upstream_ended: float | None = None


@dataclass(frozen=True, slots=True)
class Result:
    """What the client was told and what became of the request (`outcome.py`), computed once
    by the ending (`accounting.close_the_books`) and read by the ledger row, the writer's cost
    header, the metrics and the log line alike."""

    status: int = 0
    outcome: Outcome = Outcome.OK
    error_code: str | None = None  # the code of the gateway's own error response, if any
    cache_status: CacheStatus = CacheStatus.BYPASS  # what `x-gateway-cache` says
    cost_nanos: int = 0
    saved_nanos: int = 0
    usage: Usage | None = None  # as charged (bounded)
    svg_usage: SvgUsage | None = None
    images: int = 0
    # A response's two parts (they add up to upstream_cost_nanos); None for an images request.
    text_cost_nanos: int | None = None
    image_cost_nanos: int | None = None
    # What upstream charges; cost_nanos is what the team is charged (chargeback.py).
    upstream_cost_nanos: int = 0


class RequestMetrics(Protocol):
    """What a request's stages and ending count (metrics/collectors.py's Metrics)."""

    @property
    def usage_out_of_range(self) -> Counter: ...
    @property
    def ledger_journaled(self) -> Counter: ...
    def request_started(self) -> None: ...
    def stream_opened(self) -> None: ...
    def observe_request(self, flow: Flow, error: BaseException | None) -> None: ...


class Reach(Protocol):
    """What a request's stages and ending reach (runtime/services.py's Services): a test hands a
    Flow one made of fakes."""

    @property
    def settings(self) -> Settings: ...
    @property
    def store(self) -> Store: ...
    @property
    def upstream(self) -> Upstream: ...
    @property
    def prices(self) -> PriceBook: ...
    @property
    def limiter(self) -> Limiter: ...
    @property
    def cache(self) -> ResponseCache: ...
    @property
    def metrics(self) -> RequestMetrics: ...
    @property
    def journal(self) -> LedgerJournal: ...
    @property
    def health(self) -> WriteHealth: ...
    @property
    def tasks(self) -> Tasks: ...
    @property
    def budget_checks(self) -> BudgetChecks: ...


class ClientSide(Protocol):
    """The one writer to the client (client.py): the sources hand it what to send, the ending
    has it send the rest; the metrics and the log read whether the client left."""

    gone: bool
    stream_open: bool
    first_event_at: float | None
    response: web.StreamResponse | None

    def left(self) -> None: ...
    async def open_stream(
        self, status: int, headers: dict[str, str], tap: Lead | None = None
    ) -> None: ...
    async def write(self, data: bytes | bytearray) -> None: ...
    def send_whole(
        self,
        status: int,
        headers: dict[str, str],
        body: WholeBody,
        size: int,
        *,
        events: bool = False,
    ) -> None: ...
    async def finish(self, flow: Flow, error: BaseException | None) -> None: ...


class Lead(Protocol):
    """This request's part when it fills a cache miss (cache/leader.py): it sees the stream the
    client sees, and once the request's result is known it publishes the answer."""

    async def started(self, headers: dict[str, str]) -> None: ...
    async def event(self, raw: bytes | bytearray) -> None: ...
    async def finish(self, flow: Flow, error: BaseException | None) -> None: ...


@dataclass(slots=True)
class Flow:
    """One request's way through the gateway.

    Each field is None (or its default) until the stage that fills it has run: `caller` after
    authenticate, `body` after read_request_body, `params`/`parsed` after inspect_request, the
    `bill` after the accounting stages, `cache`/`leader` after the cache stages, `upstream` after
    the upstream call, the `answer` once a source has answered, and the `result` in the ending.
    The pipeline's ENDING reads what was filled in when the request ends, however it ends.
    """

    request: web.Request
    services: Any  # gateway.runtime.services.Services (Any: the services hold what runs a request)
    endpoint: Endpoint
    upstream_path: str
    request_id: str
    client: ClientSide

    caller: Caller | None = None
    body: SpooledBody | None = None
    params: dict[str, Any] = field(default_factory=dict)
    parsed: ImageParams | None = None  # the checked fields of a known endpoint's request
    ask: ResponseAsk | None = None  # a Responses request's (responses/stages.py)
    # Attribution (edge/attribution.py): X-Gateway-Tags, and the body's `user`.
    tags: dict[str, str] = field(default_factory=dict)
    end_user: str | None = None
    # Read from `parsed` by inspect_request; before that, or for a path that is not a known
    # endpoint, what an unparsed request is taken to be: no model, no stream, one image.
    model: str | None = None
    stream: bool = False
    n: int = 1
    bill: Bill = field(default_factory=Bill)
    # Headers the gateway adds to whatever answers (the rate limits'), set by check_rate_limits.
    rate_headers: dict[str, str] = field(default_factory=dict)
    cache: CachePlan | None = None
    leader: Lead | None = None
    upstream: aiohttp.ClientResponse | None = None
    response_body: SpooledBody | None = None  # a whole upstream body, read before it is sent
    timings: Timings = field(default_factory=Timings)
    answer: Answer = field(default_factory=Answer)
    result: Result = field(default_factory=Result)

    @property
    def cache_status(self) -> CacheStatus:
        """What `x-gateway-cache` says: how the cache took part, as far as it is known."""
        if self.answer.served is not None:
            return self.answer.served
        return CacheStatus.BYPASS if self.cache is None else CacheStatus.MISS
