"""What became of a request: one set of refusals, read by the SQL too, and the outcome a
GatewayError carries by default. (tests/e2e/test_outcome.py drives every outcome through the
gateway and compares the ledger, the metrics, the log and the usage report.)"""

from __future__ import annotations

import sqlite3

from gateway.errors import GatewayError, invalid_api_key, upstream_timeout
from gateway.outcome import REFUSALS, Outcome, sql_refused


def test_refusals_are_one_set_and_the_sql_selects_exactly_them() -> None:
    assert {o for o in Outcome if o.refused} == REFUSALS
    with sqlite3.connect(":memory:") as db:
        db.execute("CREATE TABLE ledger (outcome TEXT)")
        db.executemany("INSERT INTO ledger VALUES (?)", [(o.value,) for o in Outcome])
        selected = {
            row[0]
            for row in db.execute(f"SELECT outcome FROM ledger WHERE {sql_refused('outcome')}")
        }
    assert selected == {o.value for o in REFUSALS}


def test_an_error_says_what_it_makes_of_the_request() -> None:
    assert GatewayError(400, "bad").outcome is Outcome.INVALID
    assert GatewayError(413, "big").outcome is Outcome.INVALID
    assert GatewayError(500, "bug", type="server_error").outcome is Outcome.ERROR
    assert upstream_timeout(5).outcome is Outcome.UPSTREAM_ERROR
    assert invalid_api_key("no").outcome is Outcome.REFUSED_AUTH
    assert GatewayError(429, "x", outcome=Outcome.REFUSED_RATE).outcome is Outcome.REFUSED_RATE
