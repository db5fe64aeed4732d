"""`/v1/responses`: responses that can make images, created through the pipeline like an image
request (its own stages in place of the images' ones), and read, deleted, cancelled and listed
for the team that made them.

What holds: another team's response id gets the same 404 as an id that does not exist, on every
route, and nothing reaches upstream for it; a background response found ended is charged
(background.py).
"""

from __future__ import annotations

import contextlib
import time

from aiohttp import web

from gateway.accounting.journal import this_process
from gateway.accounting.policy import check_policy
from gateway.accounting.stages import check_rate_limits
from gateway.batch.caller import caller_of
from gateway.edge.attribution import attribute
from gateway.edge.endpoints import JSON, Endpoint
from gateway.errors import CLIENT_GONE, not_found
from gateway.proxy import pipeline
from gateway.proxy.client import Client
from gateway.proxy.flow import Flow
from gateway.proxy.upstream import client_response_headers
from gateway.responses import stages
from gateway.responses.background import settle_response
from gateway.runtime.state import SERVICES
from gateway.store.records import ResponseRecord

RESPONSES = Endpoint("responses", media_types=frozenset({JSON}))
CHUNK = 256 * 1024
# A response's story: the images' stages, with its own path, fields, ids and estimate.
STAGES: tuple[pipeline.Stage, ...] = (
    stages.check_response_path,
    pipeline.check_method,
    pipeline.authenticate,
    pipeline.read_request_body,
    stages.inspect_response,
    stages.check_ownership,
    attribute,
    check_policy,
    stages.estimate_response,
    *pipeline.STAGES[pipeline.STAGES.index(check_rate_limits) :],
)


async def create(request: web.Request, request_id: str) -> web.StreamResponse:
    """`POST /v1/responses`."""
    services = request.app[SERVICES]
    flow = Flow(
        request=request,
        services=services,
        endpoint=RESPONSES,
        upstream_path="",
        request_id=request_id,
        client=Client(request, services.metrics),
    )
    return await pipeline.run(flow, STAGES)


async def _owned(request: web.Request) -> ResponseRecord:
    caller = await caller_of(request)
    response_id = request.match_info["response_id"]
    found = await request.app[SERVICES].store.get_response(response_id, caller.team.id)
    if found is None:
        raise not_found("response", response_id)
    return found


async def _relay(request: web.Request, method: str, path: str) -> web.StreamResponse:
    """Upstream's answer to `method path`, relayed as it arrives (a JSON object, a list, or a
    background response's resumed stream)."""
    query = request.query_string
    answer = await request.app[SERVICES].upstream.send(
        method, path + (f"?{query}" if query else ""), {}, None, 0
    )
    try:
        response = web.StreamResponse(
            status=answer.status, headers=client_response_headers(answer.headers)
        )
        await response.prepare(request)
        with contextlib.suppress(*CLIENT_GONE):
            async for chunk in answer.content.iter_chunked(CHUNK):
                await response.write(chunk)
            await response.write_eof()
        return response
    finally:
        answer.release()


async def _charge_if_ended(request: web.Request, record: ResponseRecord) -> None:
    """A background response not yet charged is charged at once if it has ended."""
    if record.background and record.settled_at is None:
        services = request.app[SERVICES]
        with contextlib.suppress(Exception):  # the poller tries again; the client is answered
            await settle_response(services, record.id, this_process())


async def retrieve(request: web.Request) -> web.StreamResponse:
    record = await _owned(request)
    await _charge_if_ended(request, record)
    return await _relay(request, "GET", f"responses/{record.id}")


async def delete(request: web.Request) -> web.StreamResponse:
    record = await _owned(request)
    await _charge_if_ended(request, record)
    response = await _relay(request, "DELETE", f"responses/{record.id}")
    if response.status == 200:
        caller = await caller_of(request)
        store = request.app[SERVICES].store
        await store.delete_response(record.id, caller.team.id, int(time.time()))
    return response


async def cancel(request: web.Request) -> web.StreamResponse:
    """A cancelled background response is charged what it used (its usage says)."""
    record = await _owned(request)
    response = await _relay(request, "POST", f"responses/{record.id}/cancel")
    await _charge_if_ended(request, record)
    return response


async def input_items(request: web.Request) -> web.StreamResponse:
    record = await _owned(request)
    return await _relay(request, "GET", f"responses/{record.id}/input_items")


def add_routes(app: web.Application) -> None:
    """The routes on a response the team made (`POST /v1/responses` is the app's: it needs the
    request's id)."""
    app.router.add_get("/v1/responses/{response_id}", retrieve)
    app.router.add_delete("/v1/responses/{response_id}", delete)
    app.router.add_post("/v1/responses/{response_id}/cancel", cancel)
    app.router.add_get("/v1/responses/{response_id}/input_items", input_items)
