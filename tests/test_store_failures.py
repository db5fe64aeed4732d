"""What counts as a sick store (gateway/store/failures.py), and URLs shown without passwords."""

from __future__ import annotations

import sqlite3

import asyncpg
import pytest

from gateway.store.failures import cannot_open, describe, safe_url, store_failure


@pytest.mark.parametrize(
    "failure",
    [
        sqlite3.OperationalError("database or disk is full"),
        ConnectionRefusedError(111, "Connect call failed"),
        TimeoutError(),
        OSError(28, "No space left on device"),
        asyncpg.QueryCanceledError("canceling statement due to lock timeout"),
        asyncpg.InternalClientError("cannot switch to state 12"),
    ],
)
def test_the_store_and_the_disk_under_it_failing_are_store_failures(
    failure: BaseException,
) -> None:
    assert store_failure(failure)


@pytest.mark.parametrize(
    "other", [ConnectionResetError(), BrokenPipeError(), ValueError("bug"), KeyError("bug")]
)
def test_a_client_leaving_or_a_bug_is_not(other: BaseException) -> None:
    assert not store_failure(other)


def test_urls_are_shown_without_their_password() -> None:
    assert safe_url("postgresql://gw:s3cret@db:5432/x") == "postgresql://gw:***@db:5432/x"
    assert safe_url("redis://:s3cret@cache:6379/0") == "redis://:***@cache:6379/0"
    assert safe_url("sqlite:///data/gateway.db") == "sqlite:///data/gateway.db"
    line = cannot_open("postgresql://gw:s3cret@db:5432/x", ConnectionRefusedError(111, "refused"))
    assert "s3cret" not in line and "GATEWAY_DATABASE_URL" in line
    assert describe(sqlite3.DatabaseError("file is not a database")) == (
        "DatabaseError: file is not a database"
    )
