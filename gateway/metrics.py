"""Prometheus metrics: what the gateway counts, and the text `GET /metrics` serves.

What holds:
- Each request is counted once, when it ends (`observe_request`, from the pipeline's cleanup),
  from the same Flow its ledger row was written from, so the counters and the ledger agree.
- Gauges that the store knows (remaining budgets, cache size) are read from the store at scrape
  time, so every worker process reports the same truth and nothing has to be kept in step.
- With several worker processes (`PROMETHEUS_MULTIPROC_DIR` set before prometheus-client is
  imported, which `gateway serve --workers` does), counters and histograms are summed over the
  workers' files, live gauges over the live workers.
- Labels stay bounded: `endpoint` is a known endpoint or `other`; `model` is a price-table name,
  `unpriced` or `none` (never what a client typed); `team` is an admin-made name; key ids appear
  only when `GATEWAY_METRICS_KEY_LABELS` is set; prompts never.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from gateway.endpoints import ENDPOINTS
from gateway.errors import GatewayError
from gateway.flow import SERVED_BY_CACHE, Flow
from gateway.money import NANOS_PER_USD
from gateway.outcome import Outcome
from gateway.periods import Periods
from gateway.pricing import Usage
from gateway.store.base import CacheStats, Spend, Store, Team

log = logging.getLogger(__name__)
# `*_created` series double the page and tell nothing `process_start_time_seconds` would not.
disable_created_metrics()  # type: ignore[no-untyped-call]
# Seconds. Image generation takes from tens of milliseconds (a cache hit) to minutes.
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300,
)  # fmt: skip
FIRST_EVENT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)
# The kinds of tokens a bill has: text_input, cached_text_input, image_input, ... text_output.
TOKEN_KINDS = tuple(kind.name for kind in fields(Usage))


def multiprocess_dir() -> str | None:
    """The directory the worker processes share their metric files in, if any."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def model_label(flow: Flow) -> str:
    """A price-table name; `unpriced` for a model the table lacks; `none` before it is known."""
    if flow.price is not None:
        return flow.price.name
    return "none" if flow.model is None else "unpriced"


def status_class(status: int) -> str:
    return f"{status // 100}xx" if status else "none"


_REFUSAL_REASONS = {
    Outcome.REFUSED_AUTH: "auth",
    Outcome.REFUSED_BUDGET: "budget",
    Outcome.REFUSED_RATE: "rpm",
    Outcome.INVALID: "invalid",
}


def refusal_reason(flow: Flow, error: BaseException | None) -> str | None:
    """Why the gateway itself refused the request (budget, rpm, ipm, auth, invalid), or None:
    read from the request's outcome, as the ledger and the usage report read it."""
    reason = _REFUSAL_REASONS.get(flow.outcome)
    if reason == "rpm" and isinstance(error, GatewayError) and error.type == "images":
        return "ipm"
    return reason


def upstream_error(flow: Flow, error: BaseException | None) -> tuple[str, str] | None:
    """(kind, status) of what went wrong with this request's own upstream call, or None.

    kind: `status` (upstream answered with an error: `status` is its HTTP status, or
    `error_event` for an error event inside a stream), `timeout`, `unreachable` (could not
    connect, or the connection broke before a whole answer), `stream_cut`.
    """
    if flow.upstream_started is None:
        return None  # no upstream call of its own: a refusal, a hit, or a follower
    if isinstance(error, GatewayError):
        if error.code == "upstream_timeout":
            return "timeout", ""
        if error.code == "upstream_unreachable":
            return "unreachable", ""
        if error.code == "upstream_auth_failed":
            return "status", "401"
    if flow.outcome is Outcome.STREAM_CUT:
        return "stream_cut", ""
    if flow.upstream is not None and flow.upstream.status >= 400:
        return "status", str(flow.upstream.status)
    if flow.outcome is Outcome.UPSTREAM_ERROR:
        return "status", "error_event"
    return None


class Metrics:
    """The gateway's collectors, registered in a registry of their own (one per app, so that
    apps in one test process do not share counts)."""

    def __init__(self, *, key_labels: bool = False) -> None:
        self.key_labels = key_labels
        self.multiprocess_dir = multiprocess_dir()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        key = ("key",) if key_labels else ()
        self.requests = Counter(
            "gateway_requests",
            "Requests to /v1/images/*, counted when they end.",
            ("endpoint", "model", "status_class", "cache_status", *key),
            registry=r,
        )
        self.request_duration = Histogram(
            "gateway_request_duration_seconds",
            "From the request's arrival to its end (the last byte sent, or the client gone).",
            ("endpoint", "cache_status", "stream"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_duration = Histogram(
            "gateway_upstream_duration_seconds",
            "Upstream calls: from sending the request to its last byte (or its failure).",
            ("endpoint", "model"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.first_event = Histogram(
            "gateway_stream_first_event_seconds",
            "Streams: from the request's arrival to its first event sent to the client.",
            ("endpoint", "model", "cache_status"),
            buckets=FIRST_EVENT_BUCKETS,
            registry=r,
        )
        self.images = Counter(
            "gateway_images",
            "Images delivered; cache_status miss/bypass were produced upstream, hit/coalesced"
            " came from the cache.",
            ("endpoint", "model", "cache_status"),
            registry=r,
        )
        self.tokens = Counter(
            "gateway_tokens",
            "Tokens upstream billed, by kind (text_input, cached_text_input, image_input,"
            " cached_image_input, image_output, text_output).",
            ("model", "kind"),
            registry=r,
        )
        self.cost = Counter(
            "gateway_cost_usd",
            "USD charged (the ledger holds the exact nano-dollar figures).",
            ("team", "model", *key),
            registry=r,
        )
        self.saved = Counter(
            "gateway_saved_usd",
            "USD not spent because the cache or an identical request in flight answered.",
            ("team", "model", *key),
            registry=r,
        )
        self.cache_hits = Counter(
            "gateway_cache_hits", "Requests answered from a stored entry.", ("team",), registry=r
        )
        self.cache_misses = Counter(
            "gateway_cache_misses",
            "Cacheable requests that went upstream.",
            ("team",),
            registry=r,
        )
        self.coalesced = Counter(
            "gateway_coalesced_requests",
            "Requests that waited for an identical request in flight and shared its answer.",
            ("team",),
            registry=r,
        )
        self.cache_evictions = Counter(
            "gateway_cache_evictions",
            "Entries removed from the cache, by reason (size, expired, corrupt, purge).",
            ("reason",),
            registry=r,
        )
        self.refusals = Counter(
            "gateway_refusals",
            "Requests the gateway refused, by reason (budget, rpm, ipm, auth, invalid).",
            ("reason", "team"),
            registry=r,
        )
        self.outcomes = Counter(
            "gateway_request_outcomes",
            "Requests by what became of them: the outcomes of the ledger (and refused_auth).",
            ("outcome",),
            registry=r,
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors",
            "Upstream calls that failed, by kind (status, timeout, unreachable, stream_cut).",
            ("endpoint", "kind", "status"),
            registry=r,
        )
        self.usage_missing = Counter(
            "gateway_usage_missing",
            "200 answers whose usage could not be read: charged their estimate instead.",
            ("model",),
            registry=r,
        )
        self.ledger_journaled = Counter(
            "gateway_ledger_journaled",
            "Ledger rows the store could not take at once, written to the journal in the data dir.",
            registry=r,
        )
        self.ledger_replayed = Counter(
            "gateway_ledger_replayed",
            "Journaled ledger rows written into the store later.",
            registry=r,
        )
        self.orphaned = Counter(
            "gateway_reservations_orphaned",
            "Reservations whose request never settled (its process died), charged their estimate.",
            registry=r,
        )
        self.connections_refused = Counter(
            "gateway_connections_refused",
            "Client connections answered 503 at once: the connection cap was reached.",
            registry=r,
        )
        self.connections_timed_out = Counter(
            "gateway_connections_timed_out",
            "Client connections closed for being too slow, by phase (header, body).",
            ("phase",),
            registry=r,
        )
        self.in_flight = Gauge(
            "gateway_requests_in_flight",
            "Requests being handled (including those finishing after their client left).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.streams_open = Gauge(
            "gateway_streams_open",
            "Image streams (SSE) being sent to clients.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self._start_at_zero()

    def _start_at_zero(self) -> None:
        """Series whose labels are known in advance exist from the start, at 0, so that the
        first event of their kind shows in `rate()` and `increase()` (a series born at 1 has no
        earlier sample to rise from)."""
        for endpoint in (*ENDPOINTS, "other"):
            for kind in ("timeout", "unreachable", "stream_cut"):
                self.upstream_errors.labels(endpoint, kind, "")
        for reason in ("size", "expired", "corrupt", "purge"):
            self.cache_evictions.labels(reason)
        for reason in ("budget", "rpm", "ipm", "auth", "invalid"):
            self.refusals.labels(reason, "")
        for phase in ("header", "body"):
            self.connections_timed_out.labels(phase)

    def request_started(self) -> None:
        self.in_flight.inc()

    def stream_opened(self, flow: Flow) -> None:
        """Called once the stream's response has started; undone when the request ends."""
        if not flow.stream_open:
            flow.stream_open = True
            self.streams_open.inc()

    def edge_turned_away(self, what: str) -> None:
        """A connection refused at the cap (`refused`) or cut for slowness (`header`)."""
        if what == "refused":
            self.connections_refused.inc()
        else:
            self.connections_timed_out.labels(what).inc()

    def cache_evicted(self, reason: str, entries: int) -> None:
        if entries:
            self.cache_evictions.labels(reason).inc(entries)

    def observe_request(self, flow: Flow, error: BaseException | None) -> None:
        """Count the request that has just ended: its status and outcome are final."""
        self.in_flight.dec()
        if flow.stream_open:
            self.streams_open.dec()
        endpoint = flow.endpoint.name if flow.endpoint.known else "other"
        model = model_label(flow)
        cache = flow.cache_status
        team = flow.team.name if flow.team is not None else ""
        key = (flow.key.id if flow.key is not None else "",) if self.key_labels else ()
        now = time.perf_counter()

        self.requests.labels(endpoint, model, status_class(flow.status), cache, *key).inc()
        self.request_duration.labels(endpoint, cache, str(flow.stream).lower()).observe(
            now - flow.started
        )
        if flow.first_event_at is not None:
            self.first_event.labels(endpoint, model, cache).observe(
                flow.first_event_at - flow.started
            )
        if flow.upstream_started is not None:
            ended = flow.upstream_ended or now
            self.upstream_duration.labels(endpoint, model).observe(ended - flow.upstream_started)
        if flow.images:
            self.images.labels(endpoint, model, cache).inc(flow.images)
        if flow.usage is not None and cache not in SERVED_BY_CACHE:
            for kind in TOKEN_KINDS:
                count = getattr(flow.usage, kind)
                if count:
                    self.tokens.labels(model, kind).inc(count)
        if flow.cost_nanos:
            self.cost.labels(team, model, *key).inc(flow.cost_nanos / NANOS_PER_USD)
        if flow.saved_nanos:
            self.saved.labels(team, model, *key).inc(flow.saved_nanos / NANOS_PER_USD)
        if cache == "hit":
            self.cache_hits.labels(team).inc()
        elif cache == "miss":
            self.cache_misses.labels(team).inc()
        elif cache == "coalesced":
            self.coalesced.labels(team).inc()
        self.outcomes.labels(flow.outcome.value).inc()
        reason = refusal_reason(flow, error)
        if reason is not None:
            self.refusals.labels(reason, team).inc()
        if isinstance(error, GatewayError) and error.code == "request_timeout":
            self.connections_timed_out.labels("body").inc()
        if flow.outcome is Outcome.USAGE_MISSING:
            self.usage_missing.labels(model).inc()
        failed = upstream_error(flow, error)
        if failed is not None:
            self.upstream_errors.labels(endpoint, *failed).inc()

    def render(self, snapshot: StoreSnapshot) -> bytes:
        """The text exposition: this process's collectors (or, with several workers, all
        workers' files summed) and the store's gauges. Reads files: call on a thread."""
        if self.multiprocess_dir is None:
            counted = generate_latest(self.registry)
        else:
            merged = CollectorRegistry()
            MultiProcessCollector(merged, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
            counted = generate_latest(merged)
        from_store = CollectorRegistry()
        from_store.register(snapshot)
        return counted + generate_latest(from_store)


@dataclass(eq=False)  # a registry keys its collectors by identity
class StoreSnapshot(Collector):
    """The store's side of the metrics, read once per scrape: every team's budget and spend in
    its current period, and the cache's size. `store_up` is False when the store did not answer
    (then the rest is empty)."""

    store_up: bool = True
    teams: list[tuple[Team, Spend]] = field(default_factory=list)
    cache: CacheStats | None = None
    cache_max_bytes: int = 0

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("gateway_store_up", "1 when the store answered this scrape.")
        up.add_metric([], 1 if self.store_up else 0)
        yield up
        yield from self._budgets()
        if self.cache is not None:
            yield _gauge(
                "gateway_cache_entries", "Entries in the response cache.", self.cache.entries
            )
            yield _gauge(
                "gateway_cache_bytes", "Bytes of cached bodies the entries use.", self.cache.bytes
            )
            yield _gauge(
                "gateway_cache_max_bytes",
                "The cache's size limit (GATEWAY_CACHE_MAX_BYTES).",
                self.cache_max_bytes,
            )

    def _budgets(self) -> Iterator[Metric]:
        budget = GaugeMetricFamily(
            "gateway_budget_usd", "Each team's budget for its current period.", labels=["team"]
        )
        spent = GaugeMetricFamily(
            "gateway_budget_spent_usd",
            "What each team has spent in its budget's current period (total when it has none).",
            labels=["team"],
        )
        remaining = GaugeMetricFamily(
            "gateway_budget_remaining_usd",
            "What each team with a budget can still spend: budget - spent - held by requests in"
            " flight.",
            labels=["team"],
        )
        for team, spend in self.teams:
            spent.add_metric([team.name], spend.spent_nanos / NANOS_PER_USD)
            if spend.budget_nanos is not None and spend.remaining_nanos is not None:
                budget.add_metric([team.name], spend.budget_nanos / NANOS_PER_USD)
                remaining.add_metric([team.name], spend.remaining_nanos / NANOS_PER_USD)
        yield from (budget, spent, remaining)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, documentation)
    gauge.add_metric([], value)
    return gauge


async def read_store_snapshot(store: Store, cache_max_bytes: int) -> StoreSnapshot:
    """The store's gauges as of now; a store that fails gives `store_up` 0, not an error."""
    now = dt.datetime.now(dt.UTC)
    periods = Periods.at(now)
    try:
        teams = [
            (team, await store.spend("team", str(team.id), periods, now.timestamp()))
            for team in await store.list_teams()
        ]
        cache = await store.cache.stats()
    except Exception:
        log.exception("metrics: the store did not answer")
        return StoreSnapshot(store_up=False)
    return StoreSnapshot(teams=teams, cache=cache, cache_max_bytes=cache_max_bytes)
