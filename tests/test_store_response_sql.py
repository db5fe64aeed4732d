"""Responses in the store: owned by their team (another team's id finds nothing, a deleted one
neither), recorded once, background ones polled and leased one attempt at a time, their hold
handed over to no process."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from gateway.accounting.periods import Periods
from gateway.store import Store
from gateway.store.records import ResponseRecord
from tests.factories import reserve, team_and_key


def record(team_id: int, response_id: str = "resp_1", **changes: object) -> ResponseRecord:
    values: dict[str, object] = {
        "id": response_id,
        "team_id": team_id,
        "key_id": "key_1",
        "request_id": "req_1",
        "created_at": 100,
        "background": True,
        "status": "queued",
        "model": "gpt-5",
        "image_model": "gpt-image-1-mini",
        **changes,
    }
    return ResponseRecord(**values)  # type: ignore[arg-type]


async def test_a_response_is_its_teams_until_deleted(store: Store) -> None:
    team_id, _ = await team_and_key(store)
    other = await store.create_team("other")
    await store.add_response(record(team_id))
    await store.add_response(record(team_id, status="completed"))  # again: a no-op
    found = await store.get_response("resp_1", team_id)
    assert found == record(team_id)
    assert await store.get_response("resp_1", other.id) is None
    await store.delete_response("resp_1", other.id, 5)  # not its own: nothing happens
    assert await store.get_response("resp_1", team_id) is not None
    await store.delete_response("resp_1", team_id, 5)
    assert await store.get_response("resp_1", None) is None


async def test_background_ones_are_polled_and_leased_one_at_a_time(store: Store) -> None:
    team_id, _ = await team_and_key(store)
    await store.add_response(record(team_id))
    await store.add_response(record(team_id, "resp_2", background=False))
    now = time.time()
    assert await store.responses_to_poll(now, 10) == ["resp_1"]
    assert await store.lease_response("resp_1", "a", now, 60)
    assert not await store.lease_response("resp_1", "b", now, 60)
    await store.update_response("resp_1", status="completed", settled_at=7, lease_owner=None)
    assert await store.responses_to_poll(now, 10) == []
    assert not await store.lease_response("resp_1", "b", now + 100, 60)
    with pytest.raises(TypeError):
        await store.update_response("resp_1", team_id=3)


async def test_a_handed_over_hold_belongs_to_no_process(store: Store) -> None:
    team_id, key_id = await team_and_key(store)
    hold = await reserve(store, team_id, key_id, 500, "req_1")
    assert await store.holders() == ["host:1"]
    await store.hand_over_hold(hold, time.time() + 3600)
    assert await store.holders() == []
    now = dt.datetime.now(dt.UTC)
    spend = await store.spend("team", str(team_id), Periods.at(now), now.timestamp())
    assert spend.reserved_nanos == 500  # still held, by no one
    assert await store.settle_orphans(now.timestamp(), ["host:1"]) == 0
