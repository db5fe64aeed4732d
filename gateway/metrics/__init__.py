"""Prometheus metrics: what the gateway counts, and the text `GET /metrics` serves.

What holds:
- Each request is counted once, when it ends (`observe_request`, from the pipeline's ENDING),
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

from gateway.metrics.collectors import Metrics, multiprocess_dir
from gateway.metrics.store_gauges import StoreSnapshot, read_store_snapshot

__all__ = ["Metrics", "StoreSnapshot", "multiprocess_dir", "read_store_snapshot"]
