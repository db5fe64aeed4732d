"""The one commit point: the ledger row, written from the result once it is final; to the
journal when the store cannot take it; none before authentication."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gateway.accounting.commit import storable, write_ledger_row
from gateway.outcome import CacheStatus, Outcome
from gateway.pricing import Usage
from gateway.proxy.flow import Caller, Result
from tests.factories import KEY, TEAM, FakeStore, make_flow


def settled(tmp: Path, store: Any = None) -> Any:
    flow = make_flow(tmp, store=store)
    flow.caller = Caller(KEY, TEAM)
    flow.bill.estimate_nanos, flow.bill.reservation_id = 900, 7
    flow.answer.upstream_request_id = "req_up"
    flow.result = Result(
        status=200,
        outcome=Outcome.OK,
        cache_status=CacheStatus.MISS,
        cost_nanos=500,
        usage=Usage(1, 0, 2, 0, 3, 0),
        images=1,
    )
    return flow


async def test_the_row_is_the_result_as_it_was_computed(tmp_path: Path) -> None:
    flow = settled(tmp_path)
    await write_ledger_row(flow, None)
    (row,) = flow.services.store.rows
    assert (row.request_id, row.key_id, row.team_id) == ("req_unit", "key_1", 1)
    assert (row.status, row.outcome, row.cache_status) == (200, "ok", "miss")
    assert (row.cost_nanos, row.estimate_nanos, row.reservation_id) == (500, 900, 7)
    assert (row.text_input_tokens, row.image_input_tokens, row.image_output_tokens) == (1, 2, 3)
    assert (row.images, row.upstream_request_id) == (1, "req_up")
    assert flow.services.health.store_problem is None


async def test_no_row_before_authentication(tmp_path: Path) -> None:
    flow = make_flow(tmp_path)
    await write_ledger_row(flow, None)
    assert flow.services.store.rows == []


class BrokenStore(FakeStore):
    async def record(self, row: Any) -> None:
        raise OSError(28, "No space left on device")


async def test_a_store_that_cannot_take_the_row_leaves_it_in_the_journal(tmp_path: Path) -> None:
    flow = settled(tmp_path, store=BrokenStore())
    await write_ledger_row(flow, None)
    assert flow.services.health.store_problem is not None
    (journal,) = flow.services.journal.directory.glob("ledger-*.jsonl")
    (line,) = journal.read_text().splitlines()
    assert json.loads(line)["request_id"] == "req_unit" and json.loads(line)["cost_nanos"] == 500


def test_text_the_store_cannot_hold_is_escaped() -> None:
    assert storable("req_ok") == "req_ok" and storable(None) is None
    assert storable("req_\udcff") == "req_\\udcff"
