"""The store: every SQL statement of the gateway lives below this package.

Stages and the admin API talk to `Store`; `open_store(url)` picks the implementation for the URL's
scheme: SQLite (`sqlite:///path`, the embedded default) or PostgreSQL (`postgresql://…`, for
several replicas on one database).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from gateway.store.base import ApiKey, Conflict, Store, Team
from gateway.store.sqlite import SqliteStore


def open_store(url: str) -> Store:
    """A not-yet-connected store for `url`; call `await store.connect()` before use."""
    if url.startswith("sqlite:///"):
        return SqliteStore(url.removeprefix("sqlite:///"))
    if url == "sqlite://:memory:" or url == "sqlite://":
        return SqliteStore(":memory:")
    if url.startswith(("postgresql://", "postgres://")):
        from gateway.store.postgres import PostgresStore  # asyncpg loads only when used

        return PostgresStore(url)
    raise ValueError(
        f"unsupported database URL {url.split('@')[-1]!r}: use sqlite:///path or postgresql://…"
    )


@contextlib.asynccontextmanager
async def migrated_store(url: str) -> AsyncIterator[Store]:
    """The store for `url`, connected and migrated, closed on the way out: for commands and
    start-up work outside the server (the server opens its own in the app's cleanup_ctx)."""
    store = open_store(url)
    await store.connect()
    try:
        await store.migrate()
        yield store
    finally:
        await store.close()


__all__ = ["ApiKey", "Conflict", "Store", "Team", "migrated_store", "open_store"]
