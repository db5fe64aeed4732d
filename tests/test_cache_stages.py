"""The cache's stages, on make_flow with a real cache on a SQLite file (no server): the plan
(bypass, or a key), a hit that answers, and join_in_flight making a leader or a follower."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gateway.cache.inflight import Reply
from gateway.cache.leader import Leader
from gateway.cache.stages import join_in_flight, plan_cache, serve_from_cache
from gateway.outcome import CacheStatus
from gateway.proxy import pipeline
from gateway.proxy.flow import Caller, Flow
from gateway.store import Store
from tests.factories import KEY, TEAM, make_flow, team_and_key, with_cache

BODY = {"model": "gpt-image-1", "prompt": "a kite", "size": "1024x1024", "quality": "low"}


async def planned(tmp: Path, store: Store, headers: dict[str, str] | None = None,
                  **settings: Any) -> Flow:  # fmt: skip
    flow = await with_cache(make_flow(tmp, json=BODY, headers=headers, **settings), store)
    await pipeline.read_request_body(flow)
    await pipeline.inspect_request(flow)
    flow.caller = Caller(KEY, TEAM)
    await plan_cache(flow)
    return flow


async def test_the_plan_keys_identical_requests_alike_and_respects_no_store(
    tmp_path: Path, store: Store
) -> None:
    one, two = await planned(tmp_path, store), await planned(tmp_path, store)
    assert one.cache is not None and two.cache is not None
    assert one.cache.key == two.cache.key and one.cache.scope == "team:1" and one.cache.read
    assert one.cache_status is CacheStatus.MISS
    no_store = await planned(tmp_path, store, {"Cache-Control": "no-store"})
    assert no_store.cache is None and no_store.cache_status is CacheStatus.BYPASS
    no_cache = await planned(tmp_path, store, {"Cache-Control": "no-cache"})
    assert no_cache.cache is not None and not no_cache.cache.read
    off = await planned(tmp_path, store, cache_enabled=False)
    assert off.cache is None


async def test_a_miss_leads_and_an_identical_request_follows_its_answer(
    tmp_path: Path, store: Store
) -> None:
    first = await planned(tmp_path, store)
    assert await serve_from_cache(first) is False  # nothing stored yet
    assert await join_in_flight(first) is False and isinstance(first.leader, Leader)
    second = await planned(tmp_path, store)
    second.services = first.services  # the same cache, as in one process
    following = asyncio.create_task(join_in_flight(second))
    await asyncio.sleep(0.01)
    assert not following.done()  # it waits for the leader
    leader = first.leader
    assert isinstance(leader, Leader) and leader.inflight is not None
    leader.inflight.end(Reply(200, {"content-type": "application/json"}, b"{}", 1, 9))
    assert await following is True
    assert second.answer.served is CacheStatus.COALESCED and second.answer.saved_nanos == 9


async def test_a_no_cache_request_never_follows_a_twin_in_flight(
    tmp_path: Path, store: Store
) -> None:
    first = await planned(tmp_path, store)
    assert await join_in_flight(first) is False
    fresh = await planned(tmp_path, store, {"Cache-Control": "no-cache"})
    fresh.services = first.services
    assert await serve_from_cache(fresh) is False
    assert await join_in_flight(fresh) is False  # at once: it does not wait for the twin
    assert isinstance(fresh.leader, Leader) and fresh.leader.inflight is None


async def test_a_lookup_that_missed_while_its_twin_was_stored_looks_again(
    tmp_path: Path, store: Store
) -> None:
    """The twin's answer is stored and the twin leaves the registry while the second request
    reads the store (and reads nothing): the second looks again and is a hit, not a leader."""
    first = await planned(tmp_path, store)
    assert await join_in_flight(first) is False and isinstance(first.leader, Leader)
    second = await planned(tmp_path, store)
    second.services = first.services
    _, key_id = await team_and_key(store)  # a caller the store knows: its hold can be made
    known_key, known_team = await store.get_key(key_id), await store.get_team("design")
    assert known_key is not None and known_team is not None
    second.caller = Caller(known_key, known_team)
    cache = first.services.cache
    assert first.cache is not None and first.leader.inflight is not None
    inflight, key = first.leader.inflight, first.cache.key
    real_lookup = cache.store.lookup_or_reserve
    reads = []

    async def read_then_store_the_twin(wanted: str, now: float, hold: Any) -> Any:
        found = await real_lookup(wanted, now, hold)
        reads.append(found)
        # The twin's answer lands just after this read.
        entry = await cache.put(b'{"data": []}', _entry_for(key, first))
        assert entry is not None
        cache.in_flight.remove(inflight, entry)
        return found

    cache.store.lookup_or_reserve = read_then_store_the_twin
    assert await serve_from_cache(second) is True
    ((entry, held),) = reads
    assert entry is None and held is not None  # a miss, and its hold, in one trip
    assert second.bill.reservation_id == held  # settled by its ledger row
    assert second.answer.served is CacheStatus.HIT


def _entry_for(key: str, flow: Flow) -> Any:
    import time

    from gateway.cache.files import Written
    from gateway.store.base import CacheEntry

    assert flow.cache is not None
    scope = flow.cache.scope

    def entry(written: Written) -> CacheEntry:
        now = time.time()
        return CacheEntry(
            key=key, scope=scope, team_id=TEAM.id,
            key_id=KEY.id, endpoint="generations", model="gpt-image-1", stream=False,
            body_sha256=written.sha256, content_type="application/json", headers={},
            size=written.size, images=1, cost_nanos=3, created_at=now, expires_at=now + 60,
        )  # fmt: skip

    return entry
