"""The store: every SQL statement of the gateway lives below this package.

Stages and the admin API talk to `Store`; `open_store(url)` picks the implementation for the URL's
scheme: SQLite (`sqlite:///path`, the embedded default) or PostgreSQL (`postgresql://…`, for
several replicas on one database).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from gateway.store.base import Conflict, Store
from gateway.store.records import ApiKey, Team
from gateway.store.sqlite import SqliteStore


def open_store(url: str, *, pool_size: int = 10, timeout_s: float = 5.0) -> Store:
    """A not-yet-connected store for `url`; call `await store.connect()` before use. No call
    waits longer than `timeout_s` (for a lock, a connection or its statement); `pool_size` is
    PostgreSQL's connections per process."""
    if url.startswith("sqlite:///"):
        return SqliteStore(url.removeprefix("sqlite:///"), timeout_s=timeout_s)
    if url == "sqlite://:memory:" or url == "sqlite://":
        return SqliteStore(":memory:", timeout_s=timeout_s)
    if url.startswith(("postgresql://", "postgres://")):
        from gateway.store.postgres import PostgresStore  # asyncpg loads only when used

        return PostgresStore(url, pool_size=pool_size, timeout_s=timeout_s)
    raise ValueError(
        f"unsupported database URL {url.split('@')[-1]!r}: use sqlite:///path or postgresql://…"
    )


@contextlib.asynccontextmanager
async def migrated_store(url: str) -> AsyncIterator[Store]:
    """The store for `url`, connected and migrated, closed on the way out: for commands and
    start-up work outside the server (the server opens its own in the app's cleanup_ctx)."""
    store = open_store(url)
    try:
        await store.connect()
        await store.migrate()
        yield store
    finally:
        await store.close()


__all__ = ["ApiKey", "Conflict", "Store", "Team", "migrated_store", "open_store"]
