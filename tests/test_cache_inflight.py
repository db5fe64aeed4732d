"""In-flight coalescing: one leader per key, an outcome that is set once and wakes followers,
and a registration that ends."""

from __future__ import annotations

import asyncio

from gateway.cache.inflight import Abandoned, InFlightRegistry, Reply


async def test_the_first_claim_leads_and_the_others_follow() -> None:
    registry = InFlightRegistry()
    first, leads = registry.claim("k")
    second, follows = registry.claim("k")
    assert leads and not follows and first is second and len(registry) == 1
    other, leads_other = registry.claim("other")
    assert leads_other and other is not first
    registry.remove(first)
    again, leads_again = registry.claim("k")
    assert leads_again and again is not first  # a removed one is never joined again


async def test_an_outcome_is_set_once_and_wakes_every_follower() -> None:
    inflight, _ = InFlightRegistry().claim("k")
    tickets = [inflight.join(), inflight.join()]
    waiting = [asyncio.ensure_future(inflight.wait()) for _ in tickets]
    await asyncio.sleep(0)
    reply = Reply(200, {}, b"{}", 1, 10)
    inflight.end(reply)
    await asyncio.wait_for(asyncio.gather(*waiting), 1)
    inflight.end(Abandoned())  # too late: the first outcome stays
    assert inflight.outcome is reply
    for ticket in tickets:
        await inflight.leave(ticket)
    assert inflight.followers == []
