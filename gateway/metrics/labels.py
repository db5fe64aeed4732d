"""What a request is counted under: bounded label values, read from its Flow and its outcome."""

from __future__ import annotations

from gateway.errors import GatewayError
from gateway.outcome import Outcome
from gateway.proxy.flow import Flow


def model_label(flow: Flow) -> str:
    """A price-table name; `unpriced` for a model the table lacks; `none` before it is known."""
    if flow.bill.price is not None:
        return flow.bill.price.name
    return "none" if flow.model is None else "unpriced"


def status_class(status: int) -> str:
    return f"{status // 100}xx" if status else "none"


_REFUSAL_REASONS = {
    Outcome.REFUSED_AUTH: "auth",
    Outcome.REFUSED_BUDGET: "budget",
    Outcome.REFUSED_RATE: "rpm",
    Outcome.REFUSED_POLICY: "policy",
    Outcome.INVALID: "invalid",
}


def refusal_reason(flow: Flow, error: BaseException | None) -> str | None:
    """Why the gateway itself refused the request (budget, rpm, ipm, policy, auth, invalid), or
    None:
    read from the request's outcome, as the ledger and the usage report read it."""
    reason = _REFUSAL_REASONS.get(flow.result.outcome)
    if reason == "rpm" and isinstance(error, GatewayError) and error.type == "images":
        return "ipm"
    return reason


def upstream_error(flow: Flow, error: BaseException | None) -> tuple[str, str] | None:
    """(kind, status) of what went wrong with this request's own upstream call, or None.

    kind: `status` (upstream answered with an error: `status` is its HTTP status, or
    `error_event` for an error event inside a stream), `timeout`, `unreachable` (could not
    connect, or the connection broke before a whole answer), `stream_cut`.
    """
    if flow.timings.upstream_started is None:
        return None  # no upstream call of its own: a refusal, a hit, or a follower
    if isinstance(error, GatewayError):
        if error.code == "upstream_timeout":
            return "timeout", ""
        if error.code == "upstream_unreachable":
            return "unreachable", ""
        if error.code == "upstream_auth_failed":
            return "status", "401"
    if flow.result.outcome is Outcome.STREAM_CUT:
        return "stream_cut", ""
    if flow.upstream is not None and flow.upstream.status >= 400:
        return "status", str(flow.upstream.status)
    if flow.result.outcome is Outcome.UPSTREAM_ERROR:
        return "status", "error_event"
    return None
