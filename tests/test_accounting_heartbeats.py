"""A replica declares another dead when the other's heartbeat has been silent for a minute, but
only once its own heartbeats have gone through for as long (accounting/heartbeats.py); the holds of
the silent are then settled as orphaned rows."""

from __future__ import annotations

from gateway.accounting.heartbeats import GAP_S, SILENT_S, Heartbeats
from gateway.accounting.journal import settle_holds
from gateway.store import Store
from tests.factories import USD, reserve, team_and_key


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_a_silent_replica_is_declared_dead_once_this_one_has_beaten_steadily(
    store: Store,
) -> None:
    team_id, key_id = await team_and_key(store)
    await reserve(store, team_id, key_id, USD, "req_1", owner="other-host:7:abc")
    clock = Clock(10_000.0)
    other = Heartbeats(store, "other-host:7:abc", clock)
    here = Heartbeats(store, "this-host:1:def", clock)
    await other.beat()  # then it is killed: no more beats
    heard = []
    rounds = int(SILENT_S / 10) + 2  # a housekeeping round every 10 s, for 70 s
    for _ in range(rounds):
        heard.append(await here.beat())
        clock.now += 10
    assert heard[:-1] == [[]] * (rounds - 1)  # not silent long enough
    assert heard[-1] == ["other-host:7:abc"]
    assert await settle_holds(store, silent=await here.beat()) == 1
    assert await store.holders() == []


async def test_after_its_own_gap_a_replica_waits_to_hear_from_the_others_again(
    store: Store,
) -> None:
    """The store was down for everyone: nobody beat. Coming back, this replica must not take
    the others, silent through no fault of theirs, for dead."""
    team_id, key_id = await team_and_key(store)
    await reserve(store, team_id, key_id, USD, "req_1", owner="other-host:7:abc")
    clock = Clock(10_000.0)
    other = Heartbeats(store, "other-host:7:abc", clock)
    here = Heartbeats(store, "this-host:1:def", clock)
    await here.beat()
    await other.beat()
    clock.now += GAP_S + SILENT_S  # the outage
    assert await here.beat() == []
    clock.now += 10
    await other.beat()  # the other is back too
    for _ in range(int(SILENT_S / 10) + 1):
        clock.now += 10
        assert await here.beat() == []
        await other.beat()
