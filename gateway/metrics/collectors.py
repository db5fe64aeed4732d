"""The gateway's collectors, and how a request that ended is counted in them."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import fields

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from gateway.edge.endpoints import ENDPOINTS
from gateway.errors import GatewayError
from gateway.metrics.labels import model_label, refusal_reason, status_class, upstream_error
from gateway.metrics.store_gauges import StoreSnapshot
from gateway.money import NANOS_PER_USD
from gateway.outcome import CacheStatus, Outcome
from gateway.pricing import Usage
from gateway.proxy.flow import Flow

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
        self.batches = Counter(
            "gateway_batches",
            "Batch API batches, by status: created, then the status each was settled with"
            " (completed, failed, expired, cancelled).",
            ("status",),
            registry=r,
        )
        self.batch_lines = Counter(
            "gateway_batch_lines",
            "Batch API lines settled, by outcome and cache status (hit: answered from the"
            " cache and left out of the batch sent upstream).",
            ("outcome", "cache_status"),
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "gateway_webhook_deliveries",
            "Budget alert deliveries attempted, by result: delivered, failed (tried again"
            " later), gave_up (24 hours without a 2xx).",
            ("result",),
            registry=r,
        )
        self.reconcile_differences = Gauge(
            "gateway_reconcile_differences",
            "Day-and-model differences beyond the tolerance between the ledger and upstream's"
            " Costs API, at the last GET /admin/reconcile.",
            registry=r,
            multiprocess_mode="max",
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
        self.admin_auth_failures = Counter(
            "gateway_admin_auth_failures",
            "Wrong admin credentials, by surface (admin, console, metrics); 10 a minute from one"
            " address and it is answered 429 for a while.",
            ("surface",),
            registry=r,
        )
        self.ledger_quarantined = Counter(
            "gateway_ledger_quarantined",
            "Journaled ledger rows the store refused (not for being down): moved aside to"
            " <journal dir>/quarantine for the operator, so they block nothing.",
            registry=r,
        )
        self.usage_out_of_range = Counter(
            "gateway_usage_out_of_range",
            "Answers whose usage or cost passed what one request may be charged: charged the"
            " bound and flagged `usage_out_of_range` on their ledger row.",
            ("model",),
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
        self.redis_up = Gauge(
            "gateway_redis_up",
            "1 while Redis (GATEWAY_REDIS_URL) answers, 0 while rate limits fall back; absent"
            " without Redis.",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.upstream_waiting = Gauge(
            "gateway_upstream_pool_waiting",
            "Requests waiting for a pooled upstream connection (all of"
            " GATEWAY_UPSTREAM_MAX_CONNECTIONS busy); above 0 for long, raise it.",
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
        for status in ("created", "completed", "failed", "expired", "cancelled"):
            self.batches.labels(status)
        for result in ("delivered", "failed", "gave_up"):
            self.webhook_deliveries.labels(result)
        for reason in ("budget", "rpm", "ipm", "auth", "invalid"):
            self.refusals.labels(reason, "")
        for phase in ("header", "body"):
            self.connections_timed_out.labels(phase)
        for surface in ("admin", "console", "metrics"):
            self.admin_auth_failures.labels(surface)

    def admin_auth_failed(self, surface: str) -> None:
        self.admin_auth_failures.labels(surface).inc()

    def request_started(self) -> None:
        self.in_flight.inc()

    def open_now(self) -> tuple[int, int]:
        """Requests in flight and streams open in this process now (what the console shows)."""
        return _now(self.in_flight), _now(self.streams_open)

    def stream_opened(self) -> None:
        """Called once a stream's response has started (by the client's writer); undone when
        the request is observed."""
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
        if flow.client.stream_open:
            self.streams_open.dec()
        endpoint = flow.endpoint.name if flow.endpoint.known else "other"
        model = model_label(flow)
        cache = flow.result.cache_status.value
        caller = flow.caller
        team = caller.team.name if caller is not None else ""
        key = (caller.key.id if caller is not None else "",) if self.key_labels else ()
        now = time.perf_counter()

        self.requests.labels(endpoint, model, status_class(flow.result.status), cache, *key).inc()
        self.request_duration.labels(endpoint, cache, str(flow.stream).lower()).observe(
            now - flow.timings.started
        )
        if flow.client.first_event_at is not None:
            self.first_event.labels(endpoint, model, cache).observe(
                flow.client.first_event_at - flow.timings.started
            )
        if flow.timings.upstream_started is not None:
            ended = flow.timings.upstream_ended or now
            self.upstream_duration.labels(endpoint, model).observe(
                ended - flow.timings.upstream_started
            )
        result = flow.result
        if result.images:
            self.images.labels(endpoint, model, cache).inc(result.images)
        if result.usage is not None and not result.cache_status.served_by_cache:
            for kind in TOKEN_KINDS:
                count = getattr(result.usage, kind)
                if count:
                    self.tokens.labels(model, kind).inc(count)
        if result.cost_nanos:
            self.cost.labels(team, model, *key).inc(result.cost_nanos / NANOS_PER_USD)
        if result.saved_nanos:
            self.saved.labels(team, model, *key).inc(result.saved_nanos / NANOS_PER_USD)
        counted = {
            CacheStatus.HIT: self.cache_hits,
            CacheStatus.MISS: self.cache_misses,
            CacheStatus.COALESCED: self.coalesced,
        }.get(flow.result.cache_status)
        if counted is not None:
            counted.labels(team).inc()
        self.outcomes.labels(flow.result.outcome.value).inc()
        reason = refusal_reason(flow, error)
        if reason is not None:
            self.refusals.labels(reason, team).inc()
        if isinstance(error, GatewayError) and error.code == "request_timeout":
            self.connections_timed_out.labels("body").inc()
        if flow.result.outcome is Outcome.USAGE_MISSING:
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


def _now(gauge: Gauge) -> int:
    """The value of an unlabelled gauge in this process."""
    (metric,) = gauge.collect()
    return int(metric.samples[0].value)
