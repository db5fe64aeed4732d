"""The one commit point: an authenticated request's one ledger row, written by the ending from
the request's result (`write_ledger_row`).

What holds: every authenticated request gets exactly one row, and that row (one statement)
releases the request's hold and counts what it cost. It is written before the answer's last byte
leaves (the writer finishes after it). A store that cannot take it leaves the client's answer
unchanged: the row goes to the journal and into the store later.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from gateway.accounting.periods import Periods
from gateway.edge.attribution import tags_json
from gateway.edge.params import is_valid_unicode
from gateway.pricing import NO_USAGE
from gateway.proxy.flow import Flow
from gateway.store.base import LedgerRow
from gateway.store.failures import describe

log = logging.getLogger(__name__)


def ledger_row(flow: Flow) -> LedgerRow:
    """The row for a request whose result is final (and whose caller is known)."""
    caller, result = flow.caller, flow.result
    assert caller is not None
    usage = result.usage or NO_USAGE
    now = dt.datetime.now(dt.UTC)
    periods = Periods.at(now)
    return LedgerRow(
        request_id=flow.request_id,
        created_at=now.isoformat(timespec="milliseconds"),
        day=periods.day,
        week=periods.week,
        month=periods.month,
        key_id=caller.key.id,
        team_id=caller.team.id,
        endpoint=flow.endpoint.name,
        model=flow.ask.image_model if flow.ask else flow.model,  # a response's: its image model
        size=flow.parsed.size if flow.parsed else None,
        quality=flow.parsed.quality if flow.parsed else None,
        n=flow.n,
        stream=flow.stream,
        status=result.status,
        outcome=result.outcome.value,
        cache_status=result.cache_status.value,
        text_input_tokens=usage.text_input,
        cached_text_input_tokens=usage.cached_text_input,
        image_input_tokens=usage.image_input,
        cached_image_input_tokens=usage.cached_image_input,
        image_output_tokens=usage.image_output,
        text_output_tokens=usage.text_output,
        images=result.images,
        estimate_nanos=flow.bill.estimate_nanos,
        cost_nanos=result.cost_nanos,
        saved_nanos=result.saved_nanos,
        latency_ms=round((time.perf_counter() - flow.timings.started) * 1000, 3),
        # Upstream's header may hold bytes that are not UTF-8: stored escaped, never failing.
        upstream_request_id=storable(flow.answer.upstream_request_id),
        price_version=flow.bill.price_version,
        reservation_id=flow.bill.reservation_id,
        error_code=result.error_code,
        response_id=flow.answer.response_id if flow.ask else None,
        text_model=flow.ask.model if flow.ask else None,
        text_cost_nanos=result.text_cost_nanos,
        image_cost_nanos=result.image_cost_nanos,
        upstream_cost_nanos=result.upstream_cost_nanos,
        tags=tags_json(flow.tags),
        end_user=storable(flow.end_user),
    )


async def write_ledger_row(flow: Flow, error: BaseException | None) -> None:
    """An authenticated request's one row (settling its hold); none before authentication,
    where there is no key to charge."""
    if flow.caller is None:
        return
    if flow.answer.pending:  # a background response still running: written when it ends
        return  # (responses/background.py), its hold handed over to the store meanwhile
    row = ledger_row(flow)
    services = flow.services
    try:
        await services.store.record(row)
    except Exception as exc:
        # The client's answer does not change: the row waits in the journal for the store.
        services.health.store_failed(exc)
        log.error(
            "ledger write failed for %s (%s); the row goes to the journal",
            row.request_id,
            describe(exc),
        )
        try:
            await services.journal.append(row)
        except Exception as journal_exc:
            services.health.journal_failed(journal_exc)
            log.critical("ledger row LOST (journal failed too): %r", row, exc_info=True)
            return
        services.health.journal_wrote()
        services.metrics.ledger_journaled.inc()
    else:
        services.health.store_wrote()


def storable(text: str | None) -> str | None:
    """`text` as the store can hold it: valid UTF-8 (anything else backslash-escaped)."""
    if text is None or is_valid_unicode(text):
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
