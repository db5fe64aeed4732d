"""The ordered stages of a proxied request, and its ending. Reading STAGES, then ENDING, tells
a request's whole story.

Each stage is `async def stage(flow) -> bool | None`: it fills in its part of the Flow, and
returning True ends the chain: a source has answered (the cache, or upstream through the relay),
having handed its answer to the client's writer. A stage refuses by raising GatewayError.

Whatever happens, ENDING runs when the request ends, in its order: the result is computed once,
the ledger row is written (the one commit point, settling the hold), the writer sends what is
left (a whole answer with its cost, a stream's ending, or the error), a leader's followers get
their answer, upstream and the spool files are released, and the request is reported.

From DETACHED_FROM on, the stages run in a task of their own: a client that leaves cancels only
its wait, while the upstream call finishes and is charged for what it produced.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.accounting.commit import write_ledger_row
from gateway.accounting.policy import check_policy
from gateway.accounting.settle import close_the_books
from gateway.accounting.stages import check_rate_limits, estimate_cost, reserve_budget
from gateway.alerts.thresholds import alert_on_spend
from gateway.cache.stages import join_in_flight, plan_cache, serve_from_cache
from gateway.edge import auth
from gateway.edge.attribution import attribute
from gateway.edge.body import Pace, read_body
from gateway.edge.endpoints import check_forwarded_method, upstream_path
from gateway.edge.params import read_params, text
from gateway.errors import GatewayError, invalid_request, storage_unavailable
from gateway.ops.request_log import log_request
from gateway.proxy.flow import Caller, Flow
from gateway.proxy.relay import call_upstream, relay_response
from gateway.responses.background import record_response
from gateway.store.failures import describe, store_failure

log = logging.getLogger(__name__)
Stage = Callable[[Flow], Awaitable[bool | None]]
# A step of a request's ending: the Flow, and the error the request ended with (or None).
Ending = Callable[[Flow, BaseException | None], Awaitable[None]]


async def check_path(flow: Flow) -> None:
    """`flow.upstream_path` is the raw path, still percent-encoded, so upstream sees exactly
    what the client sent; and it stays under /v1/images/ however upstream decodes it."""
    flow.upstream_path = upstream_path(flow.request.raw_path)


async def check_method(flow: Flow) -> None:
    """The known endpoints take POST only; other paths GET or POST (nothing else upstream
    serves for images)."""
    check_forwarded_method(flow.request.method, flow.endpoint)


async def authenticate(flow: Flow) -> None:
    """The bearer key is live; `flow.caller` is set, and from here on the request
    will have its ledger row whatever happens."""
    key, team = await auth.authenticate(
        flow.services.store, flow.request.headers.get("Authorization")
    )
    flow.caller = Caller(key, team)


# Request bodies aiohttp decodes as they arrive (within the body limit, counted decoded); they go
# upstream decoded, without the header.
READABLE_ENCODINGS = frozenset({"identity", "gzip", "deflate"})


async def read_request_body(flow: Flow) -> None:
    """The body is read whole (spooled past the threshold) within the size limits, decoded
    when it came gzip or deflate (anything else is refused)."""
    settings = flow.services.settings
    endpoint = flow.endpoint
    media_type = flow.request.content_type.lower()
    if endpoint.known and media_type not in endpoint.media_types:
        accepted = " or ".join(sorted(endpoint.media_types))
        raise invalid_request(
            f"Unsupported Content-Type {media_type or '(none)'!r} for /v1/images/{endpoint.name};"
            f" send {accepted}.",
            code="unsupported_content_type",
        )
    encoding = flow.request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in READABLE_ENCODINGS:
        # The body must be read (its fields, its cost) and upstream is sent what was read.
        raise invalid_request(
            f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or none.",
            code="unsupported_content_encoding",
        )
    limit = settings.max_body_bytes
    if media_type == "application/json":
        limit = min(limit, settings.max_json_body_bytes)
    flow.body = await read_body(
        flow.request,
        limit=limit,
        spool_threshold=settings.spool_threshold_bytes,
        spool_dir=settings.spool_dir,
        pace=Pace(settings.body_timeout_s, settings.body_min_bytes_per_s),
    )


async def inspect_request(flow: Flow) -> None:
    """`flow.params` holds the request's fields; the ones the gateway needs are well formed.

    Only what the gateway itself relies on is checked. Every other field, known or not, is left
    for upstream to judge.
    """
    body = flow.body
    assert body is not None
    if body.json is not None:
        if not isinstance(body.json, dict):
            raise invalid_request("The JSON body must be an object.", code="invalid_json")
        flow.params = body.json
    else:
        flow.params = dict(body.fields)
    if not flow.endpoint.known:
        return
    if flow.endpoint.requires_prompt:
        prompt = flow.params.get("prompt")
        if prompt is None:
            raise invalid_request(
                "Missing required parameter: 'prompt'.",
                code="missing_required_parameter",
                param="prompt",
            )
        if not isinstance(prompt, str) or not prompt.strip():
            raise invalid_request(
                "'prompt' must be a non-empty string.", code="invalid_value", param="prompt"
            )
    settings = flow.services.settings
    model = text(flow.params, "model") or settings.default_model(flow.endpoint.name)
    if model is None and not settings.allow_unpriced_models:
        raise invalid_request(
            "Missing required parameter: 'model'. Specify a model explicitly (this gateway"
            " has no default model for this endpoint).",
            code="missing_required_parameter",
            param="model",
        )
    flow.parsed = parsed = read_params(flow.params, model)
    flow.model, flow.stream, flow.n = parsed.model, parsed.stream, parsed.n


STAGES: tuple[Stage, ...] = (
    check_path,
    check_method,
    authenticate,
    read_request_body,
    inspect_request,
    attribute,
    check_policy,
    estimate_cost,
    check_rate_limits,
    plan_cache,
    serve_from_cache,
    join_in_flight,
    reserve_budget,
    call_upstream,
    relay_response,
)
DETACHED_FROM = call_upstream


async def answer_client(flow: Flow, error: BaseException | None) -> None:
    """The writer sends what is left, now that the cost is known and the row is written."""
    await flow.client.finish(flow, error)


async def finish_leader(flow: Flow, error: BaseException | None) -> None:
    """Followers of this request get its answer; a complete one goes into the cache."""
    if flow.leader is not None:
        await flow.leader.finish(flow, error)


async def release_upstream(flow: Flow, error: BaseException | None) -> None:
    if flow.upstream is not None:
        flow.upstream.release()


async def remove_spools(flow: Flow, error: BaseException | None) -> None:
    if flow.response_body is not None:
        await flow.response_body.aclose()
    if flow.body is not None:
        await flow.body.aclose()


async def report(flow: Flow, error: BaseException | None) -> None:
    """Counted in the metrics and logged in one line; both read the flow."""
    flow.services.metrics.observe_request(flow, error)
    log_request(flow, with_prompt=flow.services.settings.log_prompts)


ENDING: tuple[Ending, ...] = (
    close_the_books,
    write_ledger_row,
    record_response,
    alert_on_spend,
    answer_client,
    finish_leader,
    release_upstream,
    remove_spools,
    report,
)


async def _run_stages(flow: Flow, stages: tuple[Stage, ...]) -> bool:
    for stage in stages:
        if await stage(flow):
            return True
    return False


async def _run_before_upstream(flow: Flow, stages: tuple[Stage, ...]) -> bool:
    """The stages before the upstream call; a store (or disk) that fails them refuses the
    request with a clean 503, since nothing has gone upstream yet."""
    try:
        return await _run_stages(flow, stages)
    except GatewayError:
        raise
    except Exception as exc:
        if not store_failure(exc):
            raise
        flow.services.health.store_failed(exc)
        log.error("request %s: the store failed before upstream (%s)", flow.request_id,
                  describe(exc))  # fmt: skip
        raise storage_unavailable("the store cannot take the request's record") from exc


async def end(flow: Flow, error: BaseException | None) -> None:
    """Run ENDING in order, however the request ended (`error`); a step that fails is logged
    and the next one runs all the same (a cancellation too, raised again once all have run)."""
    cancelled: asyncio.CancelledError | None = None
    for step in ENDING:
        try:
            await step(flow, error)
        except asyncio.CancelledError as exc:
            cancelled = exc
        except Exception:
            log.exception("ending %s: %s failed", flow.request_id, step.__name__)
    if cancelled is not None:
        raise cancelled


async def run(flow: Flow, stages: tuple[Stage, ...] = STAGES) -> web.StreamResponse:
    """Run the stages in order until one answers, then the ending; what the writer answered is
    returned (else the error is raised, for the error middleware). From DETACHED_FROM on, the
    stages and the ending run in a task of their own, which a client that leaves does not
    cancel."""
    split = stages.index(DETACHED_FROM) if DETACHED_FROM in stages else len(stages)
    flow.services.metrics.request_started()
    try:
        answered = await _run_before_upstream(flow, stages[:split])
    except BaseException as exc:
        await end(flow, exc)
        return _answered(flow, exc)
    if not answered and split < len(stages):
        name = f"request {flow.request_id}"
        detached = flow.services.tasks.spawn(name, _finish(flow, stages[split:]))
        return await _wait_for(flow, detached)
    await end(flow, None)
    return _answered(flow, None)


def _answered(flow: Flow, error: BaseException | None) -> web.StreamResponse:
    """The writer's response; or, when it wrote none, the error, raised again."""
    if flow.client.response is not None and not isinstance(error, asyncio.CancelledError):
        return flow.client.response
    if error is not None:
        raise error
    raise RuntimeError("the pipeline ended without a response")


async def _finish(flow: Flow, stages: tuple[Stage, ...]) -> web.StreamResponse:
    try:
        await _run_stages(flow, stages)
    except BaseException as exc:
        await end(flow, exc)
        return _answered(flow, exc)
    await end(flow, None)
    return _answered(flow, None)


async def _wait_for(flow: Flow, task: asyncio.Task[web.StreamResponse]) -> web.StreamResponse:
    """The detached task's answer; a client that leaves cancels only this wait."""
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        flow.client.left()
        raise
