"""The store: every SQL statement of the gateway lives below this package.

Stages and the admin API talk to `Store`; `open_store(url)` picks the implementation for the URL's
scheme. Today that is SQLite (`sqlite:///path`); a server database is another module beside it.
"""

from __future__ import annotations

from gateway.store.base import ApiKey, Conflict, Store, Team
from gateway.store.sqlite import SqliteStore


def open_store(url: str) -> Store:
    """A not-yet-connected store for `url`; call `await store.connect()` before use."""
    if url.startswith("sqlite:///"):
        return SqliteStore(url.removeprefix("sqlite:///"))
    if url == "sqlite://:memory:" or url == "sqlite://":
        return SqliteStore(":memory:")
    raise ValueError(f"unsupported database URL {url!r}: only sqlite:///path is supported")


__all__ = ["ApiKey", "Conflict", "Store", "Team", "open_store"]
