"""The cache index's size and sweep queue, kept by triggers (migrations 0006 and 0008), against a
recomputation from the entries themselves after any sequence of stores and removals; bodies kept
in the index itself (inline) are stored with their entry, leave with it, and never have a file
to sweep."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.store import open_store
from gateway.store.base import CacheEntry

BODIES = {f"{i:064x}": size for i, size in enumerate((100, 250, 4000, 7))}
INLINE = {f"{0:064x}", f"{3:064x}"}  # these two live in the index; the others are files

actions = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from("abcde"), st.sampled_from(sorted(BODIES))),
        st.tuples(st.just("delete"), st.sampled_from("abcde"), st.none()),
        st.tuples(st.just("purge_team"), st.sampled_from([1, 2]), st.none()),
        st.tuples(st.just("sweep"), st.none(), st.none()),
    ),
    max_size=30,
)


def entry(key: str, body: str, team_id: int) -> CacheEntry:
    return CacheEntry(
        key=key,
        scope=f"team:{team_id}",
        team_id=team_id,
        key_id="key_1",
        endpoint="generations",
        model="gpt-image-2",
        stream=False,
        body_sha256=body,
        content_type="application/json",
        headers={},
        size=BODIES[body],
        images=1,
        cost_nanos=1,
        created_at=1.0,
        expires_at=2e9,
        body=bytes(BODIES[body]) if body in INLINE else None,
    )


@settings(max_examples=60, deadline=None)
@given(actions)
def test_usage_and_the_sweep_queue_match_the_entries(
    steps: list[tuple[str, object, object]],
) -> None:
    import asyncio

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(Path(tmp) / "g.db", steps))


async def run(path: Path, steps: list[tuple[str, object, object]]) -> None:
    store = open_store(f"sqlite:///{path}")
    await store.connect()
    try:
        await store.migrate()
        swept: set[str] = set()
        for action, arg, body in steps:
            if action == "put":
                assert isinstance(arg, str) and isinstance(body, str)
                await store.cache.put(entry(arg, body, 1 + "abcde".index(arg) % 2))
            elif action == "delete":
                assert isinstance(arg, str)
                await store.cache.delete(arg)
            elif action == "purge_team":
                assert isinstance(arg, int)
                await store.cache.purge(team_id=arg, key_id=None)
            else:
                swept |= set(await store.cache.unused_bodies())
        swept |= set(await store.cache.unused_bodies())
        used_bytes = await store.cache.used_bytes()
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        used = {row[0] for row in db.execute("SELECT DISTINCT body_sha256 FROM cache_entries")}
        registered = {row[0] for row in db.execute("SELECT sha256 FROM cache_bodies")}
        data_of = {row[0]: row[1] for row in db.execute("SELECT sha256, data FROM cache_bodies")}
    # Oracle: the bodies entries use, computed from the entries alone.
    assert registered == used
    assert used_bytes == sum(BODIES[b] for b in used)
    # Every body file that was ever stored and is no longer used was handed out for sweeping;
    # an inline body never is (it has no file), and is kept whole while used.
    stored = {b for action, _, b in steps if action == "put"}
    assert stored - used - INLINE <= swept
    assert not swept & INLINE
    assert all(data_of[b] == (bytes(BODIES[b]) if b in INLINE else None) for b in registered)
