"""`/v1/batches`: create a batch of image lines under the caller's budgets, read it, list and
cancel it, in OpenAI's shapes.

What holds: a batch is created only with a hold of the sum of its lines' estimates at batch
prices on every budget of its key and team, made before anything reaches upstream (or a 429 that
names the sum); the hold is kept, with no process owning it, until the batch is settled (a
replica's death leaves it to another); a batch belongs to its team, and another team's key gets
the same 404 as for an id that does not exist. A batch is shown `finalizing` from the moment it
ends upstream until its lines are in the ledger: `completed` means charged.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.accounting.chargeback import charged
from gateway.accounting.journal import this_process
from gateway.accounting.periods import Periods
from gateway.accounting.quota import budget_exhausted
from gateway.batch.caller import Caller, caller_of, page_size
from gateway.batch.lines import IMAGE_URLS
from gateway.batch.settle import CREATING, ENDED, settle_batch
from gateway.batch.split import Split, cached_in_index, split_by_cache
from gateway.batch.upstream_api import UpstreamBatches
from gateway.cache.policy import caching_allowed, directives
from gateway.errors import GatewayError, invalid_request, not_found
from gateway.money import nanos_to_usd
from gateway.runtime.services import Services
from gateway.runtime.state import SERVICES
from gateway.store.records import BatchFile, BatchLine, BatchRecord

log = logging.getLogger(__name__)
# A batch's hold outlives its 24 h window by a week: a gateway down for longer than that has
# its batches' holds charged as orphans (and their lines then not charged again).
HOLD_TTL_S = 8 * 86400.0
REFRESH_S = 1.0  # a retrieve asks upstream at most this often per batch
MAX_CREATE_BYTES = 64 * 1024
CACHE_FLAG = "gateway_cache"  # metadata: "no-cache" (no answers from the cache) or "off"


async def create(request: web.Request) -> web.StreamResponse:
    """`POST /v1/batches` `{input_file_id, endpoint, completion_window, metadata?}`."""
    services = request.app[SERVICES]
    caller = await caller_of(request)
    asked = await _create_request(request)
    file = await services.store.get_file(asked["input_file_id"], caller.team.id)
    if file is None or file.purpose != "batch":
        raise not_found("file", asked["input_file_id"], param="input_file_id")
    if file.endpoint != asked["endpoint"]:
        raise invalid_request(
            f"The file's lines are for {file.endpoint}, not {asked['endpoint']}.",
            code="mismatched_endpoint",
            param="endpoint",
        )
    metadata = asked["metadata"]
    flag = (metadata or {}).get(CACHE_FLAG, "")
    cache_directives = directives(request.headers)
    write = caching_allowed(services.settings, caller.team, cache_directives) and flag != "off"
    read = write and "no-cache" not in cache_directives and flag != "no-cache"
    batch_id = f"batch_gw_{secrets.token_hex(12)}"
    lines = await services.store.file_lines(file.id)
    wanted = await cached_in_index(services, lines) if read else set()
    held = charged(caller.team, _estimate(lines, wanted))
    reservation = await _hold(services, caller, batch_id, file, lines, held)
    try:
        with tempfile.TemporaryDirectory(dir=await _spool(services), prefix="batch-") as directory:
            split = await split_by_cache(services, file, lines, wanted, Path(directory))
        if charged(caller.team, _estimate(lines, split.cached)) > held:  # fewer answers than
            await services.store.drop_hold(reservation)  # its index promised: hold the rest too
            held = charged(caller.team, _estimate(lines, split.cached))
            reservation = await _hold(services, caller, batch_id, file, lines, held)
        goes_upstream = split.upstream_file_id is not None
        record = BatchRecord(
            id=batch_id,
            upstream_id=None,
            team_id=caller.team.id,
            key_id=caller.key.id,
            input_file_id=file.id,
            endpoint=file.endpoint or asked["endpoint"],
            created_at=int(time.time()),
            lines=len(lines),
            cached_lines=len(split.cached),
            cached_file_id=split.cached_file_id,
            cache_write=write,
            held_nanos=held,
            reservation_id=reservation,
            metadata=json.dumps(metadata) if metadata is not None else None,
            status=CREATING if goes_upstream else "completed",
            upstream=None,
        )
        # Recorded before upstream hears of it: a batch upstream runs is always one the
        # gateway knows, and holds for.
        await services.store.add_batch(record)
    except BaseException:
        with contextlib.suppress(Exception):
            await services.store.drop_hold(reservation)
        raise
    services.metrics.batches.labels("created").inc()
    if goes_upstream:
        await _start_upstream(services, record, split, metadata)
    else:  # every line came from the cache: settled now
        await settle_batch(services, batch_id, this_process())
    return web.json_response(await _shown(services, batch_id))


async def _create_request(request: web.Request) -> dict[str, Any]:
    if (request.content_length or 0) > MAX_CREATE_BYTES:
        raise invalid_request("The request body is too large.", code="invalid_value")
    try:
        body = json.loads(await request.read())
    except ValueError:
        raise invalid_request("The body is not JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise invalid_request("The body must be a JSON object.", code="invalid_json")
    endpoint = body.get("endpoint")
    if not isinstance(endpoint, str) or endpoint not in IMAGE_URLS:
        raise invalid_request(
            f"This gateway runs image batches only ({' or '.join(IMAGE_URLS)}), not"
            f" {str(endpoint)[:100]!r}.",
            code="unsupported_batch_endpoint",
            param="endpoint",
        )
    if body.get("completion_window") != "24h":
        raise invalid_request(
            "'completion_window' must be '24h'.", code="invalid_value", param="completion_window"
        )
    file_id = body.get("input_file_id")
    if not isinstance(file_id, str) or not file_id:
        raise invalid_request(
            "Missing required parameter: 'input_file_id'.",
            code="missing_required_parameter",
            param="input_file_id",
        )
    return {"endpoint": endpoint, "input_file_id": file_id, "metadata": _metadata(body)}


def _metadata(body: dict[str, Any]) -> dict[str, str] | None:
    """At most 16 pairs, keys up to 64 characters and values up to 512, as OpenAI takes them."""
    metadata = body.get("metadata")
    if metadata is None:
        return None
    fits = isinstance(metadata, dict) and len(metadata) <= 16
    fits = fits and all(
        isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512
        for k, v in metadata.items()
    )
    if not fits:
        raise invalid_request(
            "'metadata' takes at most 16 string pairs (keys up to 64 characters, values up to"
            " 512).",
            code="invalid_value",
            param="metadata",
        )
    return dict(metadata)


def _estimate(lines: list[BatchLine], cached: set[str]) -> int:
    return sum(line.estimate_nanos for line in lines if line.custom_id not in cached)


async def _spool(services: Services) -> Path:
    spool = services.settings.spool_dir
    await asyncio.to_thread(spool.mkdir, parents=True, exist_ok=True)
    return spool


async def _hold(
    services: Services,
    caller: Caller,
    batch_id: str,
    file: BatchFile,
    lines: list[BatchLine],
    amount: int,
) -> int:
    """The batch's hold, owned by no process (it lasts until the batch is settled), or a 429
    naming the sum."""
    store, key, team = services.store, caller.key, caller.team
    now = dt.datetime.now(dt.UTC)
    periods = Periods.at(now)
    reservation = await store.reserve(
        key_id=key.id,
        team_id=team.id,
        amount_nanos=amount,
        periods=periods,
        now=now.timestamp(),
        ttl_s=HOLD_TTL_S,
        request_id=batch_id,
        owner=None,
        endpoint=(file.endpoint or "").rsplit("/", 1)[-1],
        model=lines[0].model if lines else None,
    )
    if reservation is not None:
        return reservation
    hint = (
        f" The batch's {len(lines)} lines are estimated at ${nanos_to_usd(amount)} in all, at"
        " batch prices; a smaller batch may fit."
    )
    for scope, scope_id, name in (("key", key.id, key.id), ("team", str(team.id), team.name)):
        spend = await store.spend(scope, scope_id, periods, now.timestamp())
        if spend.remaining_nanos is not None and spend.remaining_nanos < amount:
            raise budget_exhausted(scope, name, spend, amount, now, hint)
    raise GatewayError(
        429,
        f"The budget cannot pay for this batch right now.{hint}",
        type="insufficient_quota",
        code="insufficient_quota",
        headers={"x-should-retry": "false"},
    )


async def _start_upstream(
    services: Services, batch: BatchRecord, split: Split, metadata: dict[str, str] | None
) -> None:
    """The batch created upstream on what the cache could not answer. Refused, it is forgotten
    and its hold goes; when upstream's answer is unknown (a timeout, the client gone), it stays
    `creating` with its hold, which is charged as orphaned should upstream have run it
    unseen."""
    assert split.upstream_file_id is not None
    api = UpstreamBatches(services.upstream)
    try:
        upstream = await api.create_batch(split.upstream_file_id, batch.endpoint, metadata)
    except GatewayError as exc:
        if exc.status != 504:
            await services.store.forget_batch(batch.id)
            if batch.reservation_id is not None:
                await services.store.drop_hold(batch.reservation_id)
        raise
    await services.store.update_batch(
        batch.id,
        upstream_id=str(upstream["id"]),
        status=str(upstream.get("status")),
        upstream=json.dumps(upstream),
    )


def present(batch: BatchRecord) -> dict[str, Any]:
    """The batch as OpenAI shows one: upstream's last word, with the gateway's ids, counts and
    files (its own output, merged with the cache's answers), and `finalizing` until settled."""
    upstream: dict[str, Any] = json.loads(batch.upstream) if batch.upstream else {}
    shown = {
        "object": "batch",
        "errors": None,
        "completion_window": "24h",
        "in_progress_at": None,
        "expires_at": batch.created_at + 86400,
        "finalizing_at": None,
        "completed_at": None,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        **upstream,
    }
    counts = upstream.get("request_counts") or {}
    settled = batch.settled_at is not None
    status = batch.status if settled or batch.status not in ENDED else "finalizing"
    status = "validating" if status == CREATING else status
    if settled and batch.upstream_id is None:
        shown["completed_at"] = shown["finalizing_at"] = batch.settled_at
    shown.update(
        id=batch.id,
        endpoint=batch.endpoint,
        input_file_id=batch.input_file_id,
        created_at=batch.created_at,
        status=status,
        metadata=json.loads(batch.metadata) if batch.metadata else None,
        output_file_id=batch.output_file_id if settled else None,
        error_file_id=batch.error_file_id if settled else None,
        request_counts={
            "total": batch.lines,
            "completed": batch.completed_lines
            if settled
            else batch.cached_lines + int(counts.get("completed") or 0),
            "failed": batch.failed_lines if settled else int(counts.get("failed") or 0),
        },
    )
    return shown


async def _shown(services: Services, batch_id: str) -> dict[str, Any]:
    batch = await services.store.get_batch(batch_id, None)
    assert batch is not None
    return present(batch)


async def owned_batch(request: web.Request) -> BatchRecord:
    caller = await caller_of(request)
    batch_id = request.match_info["batch_id"]
    batch = await request.app[SERVICES].store.get_batch(batch_id, caller.team.id)
    if batch is None:
        raise not_found("batch", batch_id)
    return batch


async def retrieve(request: web.Request) -> web.StreamResponse:
    """`GET /v1/batches/{id}`: upstream is asked how it goes (at most once a second), and a
    batch found ended is settled in the background."""
    services = request.app[SERVICES]
    batch = await owned_batch(request)
    if batch.settled_at is None and batch.upstream_id is not None:
        try:
            await refresh(services, batch)
        except GatewayError as exc:  # upstream is sick: what the gateway knows is still true
            log.warning("batch %s: upstream not asked (%s)", batch.id, exc.message)
    return web.json_response(await _shown(services, batch.id))


async def refresh(services: Services, batch: BatchRecord) -> None:
    """Upstream's word on an unsettled batch, kept; an ended one is settled in a task."""
    assert batch.upstream_id is not None
    now = time.time()
    if now - batch.polled_at < REFRESH_S and batch.status not in ENDED:
        return
    upstream = await UpstreamBatches(services.upstream).batch(batch.upstream_id)
    status = str(upstream.get("status"))
    await services.store.update_batch(
        batch.id, status=status, upstream=json.dumps(upstream), polled_at=now
    )
    if status in ENDED:
        services.tasks.spawn(f"settle {batch.id}", settle_batch(services, batch.id, this_process()))


async def list_batches(request: web.Request) -> web.StreamResponse:
    """`GET /v1/batches`: the caller's team's, newest first."""
    caller = await caller_of(request)
    limit = page_size(request, default=20, most=100)
    batches = await request.app[SERVICES].store.list_batches(
        caller.team.id, limit + 1, request.query.get("after")
    )
    data = [present(batch) for batch in batches[:limit]]
    return web.json_response(
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": len(batches) > limit,
        }
    )


async def cancel(request: web.Request) -> web.StreamResponse:
    """`POST /v1/batches/{id}/cancel`: the lines done by then are charged when it ends."""
    services = request.app[SERVICES]
    batch = await owned_batch(request)
    if batch.settled_at is not None or batch.upstream_id is None:
        raise GatewayError(
            409, f"Cannot cancel a batch with status '{present(batch)['status']}'.",
            code="invalid_state",
        )  # fmt: skip
    upstream = await UpstreamBatches(services.upstream).cancel(batch.upstream_id)
    await services.store.update_batch(
        batch.id, status=str(upstream.get("status")), upstream=json.dumps(upstream)
    )
    return web.json_response(await _shown(services, batch.id))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/batches", create)
    app.router.add_get("/v1/batches", list_batches)
    app.router.add_get("/v1/batches/{batch_id}", retrieve)
    app.router.add_post("/v1/batches/{batch_id}/cancel", cancel)
