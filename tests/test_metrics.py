"""The metrics, read from a finished request's Flow (no server): what it is counted under, and
the store's gauges read once per scrape (a store that fails is `gateway_store_up 0`, not an
error)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gateway.admin import accounts
from gateway.metrics import Metrics
from gateway.metrics.store_gauges import StoreSnapshot, read_store_snapshot
from gateway.outcome import CacheStatus, Outcome
from gateway.proxy.flow import Caller, Result
from gateway.store import Store
from tests.factories import KEY, TEAM, make_flow


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


async def test_a_finished_request_is_counted_once_under_its_labels(tmp_path: Path) -> None:
    metrics = Metrics()
    flow = make_flow(tmp_path, json={"model": "gpt-image-1", "prompt": "p"})
    flow.caller = Caller(KEY, TEAM)
    flow.bill.price = flow.services.prices.table.lookup("gpt-image-1")
    metrics.request_started()
    metrics.stream_opened()
    flow.client.stream_open = True
    flow.result = Result(status=200, outcome=Outcome.OK, cache_status=CacheStatus.MISS,
                         cost_nanos=250_000_000, images=2)  # fmt: skip
    metrics.observe_request(flow, None)
    found = samples(metrics.render(StoreSnapshot(store_up=False)))
    labels = (("cache_status", "miss"), ("endpoint", "generations"), ("model", "gpt-image-1"),
              ("status_class", "2xx"))  # fmt: skip
    assert found[("gateway_requests_total", labels)] == 1
    assert found[("gateway_cost_usd_total", (("model", "gpt-image-1"), ("team", "design")))] == 0.25
    assert found[("gateway_request_outcomes_total", (("outcome", "ok"),))] == 1
    assert metrics.open_now() == (0, 0)  # in flight and streams open, both ended
    assert found[("gateway_store_up", ())] == 0


async def test_the_store_gauges_show_each_teams_budget_and_the_cache(
    tmp_path: Path, store: Store
) -> None:
    await accounts.create_team(store, accounts.TeamCreate(name="t", budget_usd="5"))
    snapshot = await read_store_snapshot(store, cache_max_bytes=1000)
    found = samples(Metrics().render(snapshot))
    assert found[("gateway_store_up", ())] == 1
    assert found[("gateway_budget_usd", (("team", "t"),))] == 5
    assert found[("gateway_budget_remaining_usd", (("team", "t"),))] == 5
    assert found[("gateway_cache_max_bytes", ())] == 1000

    class Down:
        async def list_teams(self) -> list[object]:
            raise ConnectionRefusedError("the store is down")

    snapshot = await read_store_snapshot(Down(), 0)  # type: ignore[arg-type]
    assert snapshot.store_up is False
