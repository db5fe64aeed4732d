"""A request's one log line, read from its Flow once the request has ended."""

from __future__ import annotations

import logging
import time
from typing import Any

from gateway.money import nanos_to_usd
from gateway.ops.logs import MAX_LOGGED_MODEL, MAX_LOGGED_PROMPT, REQUEST_LOG
from gateway.proxy.flow import Flow


def log_request(flow: Flow, *, with_prompt: bool = False) -> None:
    """The request's one log line: who, what, how it ended, what it cost, how long it took.
    Never the key itself (its id only); the prompt only when configured."""
    if not REQUEST_LOG.isEnabledFor(logging.INFO):
        return
    model = flow.model[:MAX_LOGGED_MODEL] if flow.model is not None else None
    fields: dict[str, Any] = {
        "request_id": flow.request_id,
        "key_id": flow.caller.key.id if flow.caller is not None else None,
        "team": flow.caller.team.name if flow.caller is not None else None,
        "method": flow.request.method,
        "endpoint": flow.endpoint.name if flow.endpoint.known else "other",
        "model": model,
        "stream": flow.stream,
        "status": flow.result.status,
        "outcome": flow.result.outcome.value,
        "cache": flow.result.cache_status.value,
        "images": flow.result.images,
        "cost_usd": nanos_to_usd(flow.result.cost_nanos),
        "saved_usd": nanos_to_usd(flow.result.saved_nanos),
        "latency_ms": round((time.perf_counter() - flow.timings.started) * 1000, 3),
        "upstream_request_id": flow.answer.upstream_request_id,
    }
    if flow.result.error_code is not None:
        fields["error_code"] = flow.result.error_code
    if flow.client.gone:
        fields["client_gone"] = True
    prompt = flow.params.get("prompt")
    if with_prompt and isinstance(prompt, str):
        fields["prompt"] = prompt[:MAX_LOGGED_PROMPT]
    REQUEST_LOG.info("request", extra={"fields": fields})
