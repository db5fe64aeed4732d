"""The cache's pipeline stages: plan (key and policy), look up, join an identical request in
flight, in this process or (through Redis) on another replica. A miss leaves the request as the
leader that goes upstream (see leader.py)."""

from __future__ import annotations

import asyncio
import logging

from gateway.accounting.stages import hold_for
from gateway.cache.inflight import Abandoned, Ending, Failed, InFlight, Reply, Stored, StreamEnd
from gateway.cache.key import KeyRequest, cache_key
from gateway.cache.leader import Leader
from gateway.cache.policy import CachePlan, caching_allowed, directives, scope_of
from gateway.cache.serve import fail_as_leader_did, follow_stream, serve_reply, serve_stored
from gateway.outcome import CacheStatus, Outcome
from gateway.proxy.flow import Flow

log = logging.getLogger(__name__)
LARGE_BODY = 256 * 1024  # canonicalising a body this large is done on a thread


async def plan_cache(flow: Flow) -> None:
    """`flow.cache` holds the request's key and what it may do with the cache, or stays None
    (the request bypasses the cache)."""
    settings = flow.services.settings
    body, caller = flow.body, flow.caller
    assert body is not None and caller is not None
    key, team = caller.key, caller.team
    if not flow.endpoint.known or flow.model is None:
        return
    if flow.ask is not None and not flow.ask.self_contained:
        return  # its answer depends on what upstream keeps (a previous response, a background run)
    asked = directives(flow.request.headers)
    if not caching_allowed(settings, team, asked):
        return
    scope = scope_of(settings, key, team)
    request = KeyRequest(
        scope=scope,
        endpoint=flow.endpoint.name,
        query=flow.request.query_string,
        model=flow.model,
        stream=flow.stream,
    )
    ignored = settings.cache_ignored_fields
    if body.size > LARGE_BODY:
        digest = await asyncio.to_thread(cache_key, request, body, ignored)
    else:
        digest = cache_key(request, body, ignored)
    flow.cache = CachePlan(digest, scope, read="no-cache" not in asked)


LOOKUPS = 3  # at most, when twins keep ending during the lookups


async def serve_from_cache(flow: Flow) -> bool:
    """A hit is answered from its stored body, charged nothing. A miss has its hold made in the
    same trip to the store (reserve_budget keeps it, or refuses when it could not be made).

    A miss holds until join_in_flight claims the key, with no await in between: a twin that
    ended and left the in-flight registry while the store was read (its answer stored just
    after the read) is looked up again, so the request is a hit rather than a second upstream
    call."""
    plan = flow.cache
    if plan is None or not plan.read:
        return False
    cache = flow.services.cache
    removed = cache.in_flight.removed
    hit, flow.bill.reservation_id = await cache.lookup_or_hold(plan.key, hold_for(flow))
    if flow.bill.reservation_id is not None:
        flow.services.health.store_wrote()
    for _ in range(LOOKUPS - 1):
        if hit is not None or cache.in_flight.removed == removed:
            break
        removed = cache.in_flight.removed
        hit = await cache.lookup(plan.key)
    return hit is not None and serve_stored(flow, hit, CacheStatus.HIT)


async def join_in_flight(flow: Flow) -> bool:
    """Follow an identical request already in flight, or become the leader that goes upstream
    (and that later identical requests follow)."""
    plan = flow.cache
    if plan is None:
        return False
    cache = flow.services.cache
    tried: InFlight | None = None
    while True:
        inflight, leading = cache.in_flight.claim(plan.key)
        if leading and plan.read and cache.remote is not None:
            # First here: first anywhere, or follow the replica that is (remote.py).
            leading = await cache.remote.join(plan.key, inflight)
        # Twins may not join a no-cache request, nor can a follower wait twice on one leader
        # whose outcome it could not use: those go upstream on their own.
        if leading or not plan.read or inflight is tried:
            flow.leader = Leader(cache, plan.key, inflight if leading else None)
            return False
        _drop_hold(flow)  # a follower spends nothing while it waits
        if await _follow(flow, inflight):
            return True
        tried = inflight  # its leader gave up, or its outcome could not be used: try again


def _drop_hold(flow: Flow) -> None:
    """The hold made with the lookup goes, in the background (should the follower go upstream
    after all, reserve_budget makes a new one). Its ledger row would settle it anyway."""
    held, flow.bill.reservation_id = flow.bill.reservation_id, None
    if held is not None:
        flow.services.tasks.spawn(f"drop hold {held}", _dropped(flow, held))


async def _dropped(flow: Flow, held: int) -> None:
    try:
        await flow.services.store.drop_hold(held)
    except Exception:  # the hold stays until the request's ledger row settles it by name
        log.warning("a follower's hold %d stays until its ledger row", held, exc_info=True)


def _complete(ending: Ending | None) -> bool:
    """The leader's answer is whole and goes into the cache."""
    if isinstance(ending, Reply):
        return ending.status == 200
    return isinstance(ending, StreamEnd) and ending.outcome is Outcome.OK


async def _follow(flow: Flow, inflight: InFlight) -> bool:
    """Answered from the leader's answer; False when it cannot be used (go on alone)."""
    # A twin that finished before this request arrived answers it as a hit: its response is
    # complete (and on its way into the store); only requests that waited are `coalesced`.
    status = CacheStatus.HIT if inflight.outcome is not None else CacheStatus.COALESCED
    if status is CacheStatus.HIT and _complete(inflight.outcome):
        flow.services.cache.count_hit(inflight.key)  # on the entry being stored
    ticket = inflight.join()
    try:
        while inflight.tee is None and inflight.outcome is None:
            await inflight.wait()
        if inflight.tee is not None:
            return await follow_stream(flow, inflight, status)
    finally:
        await inflight.leave(ticket)
    outcome = inflight.outcome
    if isinstance(outcome, Reply):
        return serve_reply(flow, outcome, status)
    if isinstance(outcome, Stored):
        hit = await flow.services.cache.open(outcome.entry)
        return hit is not None and serve_stored(flow, hit, status)
    if isinstance(outcome, Failed):
        raise fail_as_leader_did(flow, outcome.error, status)
    # Abandoned, or a stream the leader could not share (it had no tee): go on alone.
    assert isinstance(outcome, Abandoned | StreamEnd)
    return False
