"""The response cache itself, on a SQLite file (no server): a body put in the background is
found and opened whole, small ones from the index and large ones from their file; a body that no
longer matches its hash is a miss, and dropped; an expired entry is a miss."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from gateway.cache.cache import ResponseCache
from gateway.cache.files import Written
from gateway.settings import Settings
from gateway.store import Store
from gateway.store.base import CacheEntry


def maker(key: str, ttl: float = 60) -> Callable[[Written], CacheEntry]:
    def entry(written: Written) -> CacheEntry:
        now = time.time()
        return CacheEntry(
            key=key, scope="team:1", team_id=1, key_id="key_1", endpoint="generations",
            model="gpt-image-1", stream=False, body_sha256=written.sha256,
            content_type="application/json", headers={}, size=written.size, images=1,
            cost_nanos=3, created_at=now, expires_at=now + ttl,
        )  # fmt: skip

    return entry


async def started(tmp: Path, store: Store) -> ResponseCache:
    cache = ResponseCache(Settings(data_dir=tmp, cache_inline_max_bytes=100), store)
    await cache.start()
    return cache


async def test_what_is_put_is_found_whole_inline_or_from_its_file(
    tmp_path: Path, store: Store
) -> None:
    cache = await started(tmp_path, store)
    small, large = b'{"data": []}', b"x" * 5000
    stored = [await cache.put(small, maker("small")), await cache.put(large, maker("large"))]
    assert all(entry is not None for entry in stored)
    hit = await cache.lookup("small")
    assert hit is not None and hit.body == small  # in the index
    hit = await cache.lookup("large")
    assert hit is not None and not isinstance(hit.body, bytes)
    assert hit.body.read() == large  # type: ignore[union-attr]
    hit.body.close()
    assert await cache.lookup("absent") is None
    await cache.close()


async def test_a_body_that_no_longer_matches_its_hash_is_a_miss(
    tmp_path: Path, store: Store
) -> None:
    cache = await started(tmp_path, store)
    entry = await cache.put(b"y" * 5000, maker("k"))
    assert entry is not None
    (body_file,) = [p for p in cache.settings.cache_dir.rglob("*") if p.name == entry.body_sha256]
    body_file.write_bytes(b"z" * 5000)
    assert await cache.lookup("k") is None
    assert await cache.lookup("k") is None  # and the entry was dropped
    await cache.close()


async def test_an_expired_entry_is_a_miss(tmp_path: Path, store: Store) -> None:
    cache = await started(tmp_path, store)
    assert await cache.put(b"{}", maker("old", ttl=-1)) is not None
    assert await cache.lookup("old") is None
    await cache.close()
