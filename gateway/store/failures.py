"""Which exceptions mean the store (or the disk under it) is down, slow or full, rather than a
bug: those become a clean 503 `storage_unavailable` for the client and a `/readyz` that says so."""

from __future__ import annotations

import sqlite3
import sys
from urllib.parse import urlsplit, urlunsplit

from gateway.errors import CLIENT_GONE


def store_failure(exc: BaseException) -> bool:
    """True for SQLite's and PostgreSQL's own errors, a store call that timed out, and an OS
    error (a refused connection, a full disk) that is not a client leaving."""
    if isinstance(exc, CLIENT_GONE):
        return False
    failures: tuple[type[BaseException], ...] = (sqlite3.Error, OSError, TimeoutError)
    asyncpg = sys.modules.get("asyncpg")  # loaded only when PostgreSQL is configured
    if asyncpg is not None:
        # InternalClientError: a connection the server dropped mid-operation.
        failures += (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)
    return isinstance(exc, failures)


def describe(exc: BaseException) -> str:
    """A short, secret-free account of a store failure: its kind and first line."""
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def safe_url(url: str) -> str:
    """`url` with its password (if any) shown as `***`: fit for a log line or `gateway config`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


def cannot_open(url: str, exc: BaseException) -> str:
    """One line that says which store cannot be opened, why, and what to do."""
    if url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:///")
        return (
            f"the database file {path} cannot be opened ({describe(exc)}): it is damaged or not"
            " a gateway database. Restore it from a backup, or move it aside to start with an"
            " empty one (set GATEWAY_DATA_DIR or GATEWAY_DATABASE_URL to use another)"
        )
    return (
        f"the database {safe_url(url)} cannot be used ({describe(exc)}): check that the server"
        " runs and answers, and GATEWAY_DATABASE_URL"
    )
