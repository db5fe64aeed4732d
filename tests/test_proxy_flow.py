"""The Flow before and after its parts are filled: what an unparsed request is taken to be, and
the cache status as far as it is known."""

from __future__ import annotations

from pathlib import Path

from gateway.cache.policy import CachePlan
from gateway.outcome import CacheStatus
from gateway.proxy import pipeline
from tests.factories import make_flow


async def test_an_unparsed_request_is_one_image_no_stream_no_model(tmp_path: Path) -> None:
    flow = make_flow(tmp_path, json={"model": "gpt-image-1", "prompt": "p", "n": 3})
    assert (flow.model, flow.stream, flow.n) == (None, False, 1)
    await pipeline.read_request_body(flow)
    await pipeline.inspect_request(flow)
    assert (flow.model, flow.stream, flow.n) == ("gpt-image-1", False, 3)


async def test_the_cache_status_follows_the_plan_and_whoever_answered(tmp_path: Path) -> None:
    flow = make_flow(tmp_path)
    seen = [flow.cache_status]
    flow.cache = CachePlan("k", "team:1", read=True)
    seen.append(flow.cache_status)
    flow.answer.served = CacheStatus.COALESCED
    seen.append(flow.cache_status)
    assert seen == [CacheStatus.BYPASS, CacheStatus.MISS, CacheStatus.COALESCED]
    assert flow.result.cache_status is CacheStatus.BYPASS  # the result waits for the ending
