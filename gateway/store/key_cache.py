"""Keys found by hash, kept in memory, so that authenticating a request costs no store round trip.

What holds: a cached answer is used only while the key generation is what it was before that
answer was read from the database. Every change to a key or a team moves the generation after it
has committed: in this process, and in every other process on the same database (worker
processes, the CLI), through a counter in a small memory-mapped file beside the database, the way
SQLite shares its own WAL index. So a revoked, rotated or re-limited key is never accepted from
memory once the change has returned. An answer also ages out after `MAX_AGE_S`, a backstop for a
change made outside the gateway (SQL by hand). Unknown keys are not cached.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path

from gateway.store.records import ApiKey, Team

MAX_AGE_S = 10.0
MAX_ENTRIES = 10_000
_COUNTER = struct.Struct("<Q")

Found = tuple[ApiKey, Team]


class Generation:
    """A counter every process on one database sees: in a memory-mapped file when `path` is
    given (reading it is a memory read, no system call), else in this process only."""

    def __init__(self, path: Path | None) -> None:
        self._local = 0
        self._map: mmap.mmap | None = None
        if path is not None:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                if os.fstat(fd).st_size < _COUNTER.size:
                    os.ftruncate(fd, _COUNTER.size)
                self._map = mmap.mmap(fd, _COUNTER.size)
            finally:
                os.close(fd)

    def value(self) -> int:
        if self._map is None:
            return self._local
        return int(_COUNTER.unpack_from(self._map)[0])

    def bump(self) -> None:
        """Move the counter. Two processes bumping at once may write the same value; that is
        enough, since each committed its change before reading the value it moves."""
        if self._map is None:
            self._local += 1
        else:
            _COUNTER.pack_into(self._map, 0, (self.value() + 1) % 2**64)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None


def _nobody_else() -> None:
    pass


class KeyCache:
    def __init__(self, generation: Generation, max_age_s: float = MAX_AGE_S) -> None:
        self.generation = generation
        self.max_age_s = max_age_s
        self._found: dict[str, tuple[Found, int, float]] = {}
        # Tells other replicas (replicas/changes.py); the generation tells this machine's others.
        self.on_change: Callable[[], None] = _nobody_else

    def get(self, key_hash: str) -> Found | None:
        """The cached key and team for `key_hash`, if still current."""
        cached = self._found.get(key_hash)
        if cached is None:
            return None
        found, generation, read_at = cached
        if generation != self.generation.value() or time.monotonic() - read_at > self.max_age_s:
            del self._found[key_hash]
            return None
        return found

    def put(self, key_hash: str, found: Found, generation: int) -> None:
        """Keep what was read from the database; `generation` is the value read before it."""
        if len(self._found) >= MAX_ENTRIES:
            self._found.clear()  # a cache that big is churning: start over rather than evict
        self._found[key_hash] = (found, generation, time.monotonic())

    def changed(self) -> None:
        """A key or team changed (and committed): no process uses what it cached before."""
        self._found.clear()
        self.generation.bump()
        self.on_change()

    def forget(self) -> None:
        """Another replica changed a key or team: read them all afresh."""
        self._found.clear()
