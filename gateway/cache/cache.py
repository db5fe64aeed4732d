"""The response cache: bodies (small ones in the index, others as files on disk), their index in
the store, and requests in flight.

What holds: an entry is served only while it is fresh (before `expires_at`) and its body is
intact (its SHA-256 is its name); a missing or corrupt body is a miss, and its entry is dropped
so the next response replaces it. The bodies the index still uses fit in `cache_max_bytes` after
every store (least recently used entries go first). Naming a body file, writing its index row
and sweeping unused bodies happen under one lock, so a sweep never removes a body that an entry
is about to name.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from gateway.admin import accounts
from gateway.cache.batch import BatchStore, PendingStore
from gateway.cache.files import BodyFiles, Written
from gateway.cache.inflight import InFlightRegistry
from gateway.cache.objects import ObjectBodies, ObjectBody, ObjectStoreUnavailable
from gateway.money import nanos_to_usd
from gateway.settings import Settings
from gateway.store import Store
from gateway.store.base import CacheEntry, Hold

if TYPE_CHECKING:
    from gateway.cache.remote import RemoteFlights
    from gateway.replicas.redis_link import RedisLink

log = logging.getLogger(__name__)
STRAY_AGE_S = 3600.0  # a body file no entry names, older than this, is left over: removed


@dataclass(frozen=True, slots=True)
class Hit:
    entry: CacheEntry
    # A file open at offset 0, or an object open in the object store (the caller closes either),
    # or the inline body itself.
    body: BinaryIO | ObjectBody | bytes


def _not_counted(reason: str, entries: int) -> None:
    pass


class ResponseCache:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        on_evicted: Callable[[str, int], None] = _not_counted,
        redis: RedisLink | None = None,
    ) -> None:
        """`on_evicted(reason, entries)` hears of every entry removed (reason: size, expired,
        corrupt, purge): the metrics count them. With `redis`, identical requests on other
        replicas coalesce too."""
        self.settings = settings
        self.store = store
        self.on_evicted = on_evicted
        self.files = BodyFiles(settings.cache_dir)  # body files, or partial writes only
        # Body files in an object store shared by every replica (objects.py), or on disk.
        self.objects: ObjectBodies | None = None
        if (url := settings.cache_object_store) is not None:
            self.objects = ObjectBodies(
                url,
                endpoint_url=settings.cache_s3_endpoint_url,
                region=settings.cache_s3_region,
                timeout_s=settings.database_timeout_s,
            )
        self.in_flight = InFlightRegistry()
        self._lock = asyncio.Lock()
        # Hits not yet written to the index: {key: (hits, last hit)}. Written by housekeeping,
        # so a hit costs no write on the serving path.
        self._hits: dict[str, tuple[int, float]] = {}
        self._batches = BatchStore(self._store_batch)
        # Identical requests in flight on other replicas, through Redis (remote.py); None: this
        # process coalesces its own only.
        self.remote: RemoteFlights | None = None
        if redis is not None and settings.cache_enabled:
            from gateway.cache.remote import RemoteFlights  # redis loads only when used

            self.remote = RemoteFlights(redis, self)

    async def start(self, *, empty_tmp: bool = True) -> None:
        await asyncio.to_thread(
            self.files.prepare, empty_tmp=empty_tmp, shared=self.settings.cache_shared
        )
        if self.objects is not None:
            await self.objects.start()

    async def lookup(self, key: str) -> Hit | None:
        """The fresh entry for `key` with its body open, counted as a hit; or None."""
        entry = await self.store.cache.get(key, time.time())
        return None if entry is None else await self.open(entry)

    async def lookup_or_hold(self, key: str, hold: Hold) -> tuple[Hit | None, int | None]:
        """`lookup`, and on a miss `hold` reserved in the same trip to the store: (the hit or
        None, the reservation's id or None)."""
        entry, held = await self.store.lookup_or_reserve(key, time.time(), hold)
        return (None if entry is None else await self.open(entry)), held

    async def open(self, entry: CacheEntry) -> Hit | None:
        """The entry with its body open, counted as a hit; None (and the entry dropped) when
        the body is missing or corrupt."""
        body: BinaryIO | ObjectBody | bytes | None
        if entry.body is not None:
            intact = hashlib.sha256(entry.body).hexdigest() == entry.body_sha256
            body = entry.body if intact else None
        elif self.objects is not None:
            try:
                body = await self.objects.open(entry.body_sha256, entry.size)
            except ObjectStoreUnavailable as exc:
                log.warning("cache body %s not read (%s): a miss", entry.body_sha256[:12], exc)
                return None  # the entry stays: the store will answer again
        else:
            body = await self.files.open_verified(entry.body_sha256, entry.size)
        if body is None:
            log.warning("cache body %s is missing or corrupt: dropped", entry.body_sha256)
            await self.store.cache.delete(entry.key)
            self.on_evicted("corrupt", 1)
            return None
        self.count_hit(entry.key)
        return Hit(entry, body)

    async def read_whole(self, entry: CacheEntry) -> bytes | None:
        """The entry's whole body, verified, without counting a hit (what the console shows);
        None when it is missing or corrupt."""
        if entry.body is not None:
            return entry.body
        if self.objects is not None:
            body = await self.objects.open(entry.body_sha256, entry.size)
            if body is None:
                return None
            try:
                return b"".join([chunk async for chunk in body.chunks()])
            finally:
                await body.close()
        file = await self.files.open_verified(entry.body_sha256, entry.size)
        if file is None:
            return None
        try:  # at offset 0: the handle may share its position with a hit being served
            return await asyncio.to_thread(os.pread, file.fileno(), entry.size, 0)
        finally:
            file.close()

    def count_hit(self, key: str) -> None:
        """One more hit on `key`'s entry (written to the index with the next flush; an entry
        still being stored has it by then, since every flush drains the stores first)."""
        count, _ = self._hits.get(key, (0, 0.0))
        self._hits[key] = (count + 1, time.time())

    def put(
        self, body: bytes | Written, entry: Callable[[Written], CacheEntry]
    ) -> asyncio.Future[CacheEntry | None]:
        """Store a body and its entry in the background (batched with others), queued at once;
        the future is the entry once it is stored, or None. A failure there is logged and costs
        only the entry."""
        stored: asyncio.Future[CacheEntry | None] = asyncio.get_running_loop().create_future()

        def done(entry: CacheEntry | None) -> None:
            if not stored.done():
                stored.set_result(entry)

        self._batches.submit(PendingStore(body, entry, done))
        return stored

    async def _store_batch(self, batch: list[PendingStore]) -> None:
        """Name every body file of the batch (one worker-thread call; small bodies need none,
        they go into the index) and index the entries (one store statement), under the lock;
        then, past the size limit, evict down to it. Every pending store's `done` is called."""
        limit, inline_max = self.settings.cache_max_bytes, self.settings.cache_inline_max_bytes
        inline: list[PendingStore] = []
        to_files: list[PendingStore] = []
        for pending in batch:
            if pending.size > limit:
                if isinstance(pending.body, Written):
                    await self.files.discard(pending.body)
                pending.done(None)
            elif isinstance(pending.body, bytes) and pending.size <= inline_max:
                # Creating a file costs more CPU than a small blob in the row written anyway,
                # and a hit then needs no file.
                inline.append(pending)
            else:
                to_files.append(pending)
        try:
            async with self._lock:
                stored = [(pending, _inline_entry(pending)) for pending in inline]
                if to_files and self.objects is not None:
                    stored += await self._upload(to_files)
                elif to_files:
                    bodies = [pending.body for pending in to_files]
                    named = await asyncio.to_thread(self.files.name_all, bodies)
                    stored += [
                        (pending, pending.entry(written))
                        for pending, written in zip(to_files, named, strict=True)
                        if written is not None
                    ]
                used = await self.store.cache.put_many([e for _, e in stored]) if stored else 0
                if used > limit:
                    await self._flush_hits()  # eviction goes by the latest hits
                    self.on_evicted("size", await self.store.cache.evict_to(limit))
                    await self._sweep()
        except Exception:
            log.exception("could not store %d responses in the cache", len(inline) + len(to_files))
            stored = []
        entries = {id(pending): entry for pending, entry in stored}
        for pending in (*inline, *to_files):
            pending.done(entries.get(id(pending)))

    async def _upload(self, batch: list[PendingStore]) -> list[tuple[PendingStore, CacheEntry]]:
        """Put each body into the object store (a partial write's file goes once it is read)."""
        assert self.objects is not None
        stored = []
        for pending in batch:
            body = pending.body
            try:
                if isinstance(body, Written):
                    data = await asyncio.to_thread(body.temp.read_bytes)
                    await self.files.discard(body)
                else:
                    data = body
                sha256 = hashlib.sha256(data).hexdigest()
                await self.objects.put(sha256, data)
            except Exception:
                log.exception("could not put a cache body into the object store")
                continue
            stored.append((pending, pending.entry(Written(Path(), sha256, len(data)))))
        return stored

    async def housekeeping(self) -> None:
        """Write pending hit counts, drop expired entries and the bodies nothing uses."""
        await self.drain()
        await self._flush_hits()
        self.on_evicted("expired", await self.store.cache.delete_expired(time.time()))
        async with self._lock:
            await self._sweep()

    @property
    def storing(self) -> bool:
        """Whether stores handed over are still to be done."""
        return not self._batches.idle

    async def drain(self) -> None:
        """Wait until every store handed over so far is done."""
        while self.storing:
            await self._batches.drain()

    async def close(self) -> None:
        await self.drain()
        await self._flush_hits()
        self.files.close()
        if self.remote is not None:
            await self.remote.close()
        if self.objects is not None:
            await self.objects.close()

    async def purge(self, *, team_id: int | None = None, key_id: str | None = None) -> int:
        await self.drain()  # what was handed over before the purge is purged too
        await self._flush_hits()
        dropped = await self.store.cache.purge(team_id=team_id, key_id=key_id)
        self.on_evicted("purge", dropped)
        async with self._lock:
            await self._sweep()
        return dropped

    async def purge_for(self, *, team: str | None = None, key: str | None = None) -> int:
        """Purge by team name and/or key id (accounts.NotFound when either does not exist)."""
        team_id = (await accounts.get_team(self.store, team)).id if team else None
        key_id = (await accounts.get_key(self.store, key)).id if key else None
        return await self.purge(team_id=team_id, key_id=key_id)

    async def stats(self) -> dict[str, Any]:
        await self.drain()
        await self._flush_hits()
        stats = await self.store.cache.stats()
        return {
            "enabled": self.settings.cache_enabled,
            "scope": self.settings.cache_scope,
            "ttl_s": self.settings.cache_ttl_s,
            "max_bytes": self.settings.cache_max_bytes,
            "entries": stats.entries,
            "bodies": stats.bodies,
            "bytes": stats.bytes,
            "hits": stats.hits,
            "in_flight": len(self.in_flight),
            "teams": [
                {k: v for k, v in team.items() if k != "saved_nanos"}
                | {"saved_usd": nanos_to_usd(team["saved_nanos"])}
                for team in stats.by_team
            ],
        }

    async def verify(self) -> dict[str, int]:
        """Rehash every body; drop the entries of those that are missing or corrupt, and files
        no entry names."""
        checked = corrupt = dropped = 0
        is_intact = self.files.is_intact if self.objects is None else self.objects.is_intact
        for sha256, size in await self.store.cache.bodies():
            checked += 1
            if not await is_intact(sha256, size):
                corrupt += 1
                dropped += await self.store.cache.delete_body(sha256)
        for sha256, body in await self.store.cache.inline_bodies():
            checked += 1
            if hashlib.sha256(body).hexdigest() != sha256:
                corrupt += 1
                dropped += await self.store.cache.delete_body(sha256)
        self.on_evicted("corrupt", dropped)
        async with self._lock:
            await self._sweep()
            known = {sha256 for sha256, _ in await self.store.cache.bodies()}
            if self.objects is not None:
                await self.objects.remove(await self.objects.stray(known, STRAY_AGE_S))
            else:
                await self.files.remove(await self.files.stray_files(known, STRAY_AGE_S))
        return {"checked": checked, "corrupt": corrupt, "entries_dropped": dropped}

    async def _flush_hits(self) -> None:
        hits, self._hits = self._hits, {}
        await self.store.cache.touch(hits)

    async def _sweep(self) -> None:
        """Remove the body files no entry uses (the lock is held)."""
        unused = await self.store.cache.unused_bodies()
        if self.objects is not None:
            await self.objects.remove(unused)
        else:
            await self.files.remove(unused)


def _inline_entry(pending: PendingStore) -> CacheEntry:
    """The entry of a body small enough to live in the index, with that body."""
    assert isinstance(pending.body, bytes)
    data = pending.body
    written = Written(Path(), hashlib.sha256(data).hexdigest(), len(data))
    return dataclasses.replace(pending.entry(written), body=data)
