"""WriteHealth: a write failure is remembered, and forgotten at the next write that passes."""

from __future__ import annotations

import sqlite3

from gateway.store.health import WriteHealth


def test_a_failure_is_remembered_until_a_write_of_its_kind_passes() -> None:
    health = WriteHealth()
    assert (health.store_problem, health.journal_problem) == (None, None)
    health.store_failed(sqlite3.OperationalError("database or disk is full"))
    health.journal_failed(OSError(28, "No space left on device"))
    assert health.store_problem == "OperationalError: database or disk is full"
    assert health.journal_problem == "OSError: [Errno 28] No space left on device"
    health.journal_wrote()  # one kind's success says nothing of the other's
    assert health.store_problem is not None and health.journal_problem is None
    health.store_wrote()
    assert health.store_problem is None
