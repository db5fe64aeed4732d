"""Small cached bodies kept in the index (GATEWAY_CACHE_INLINE_MAX_BYTES), end to end with the
official SDK: no file is created for them, hits are the same image, a corrupted one is never
served, and `verify` checks them; a body past the limit, and every stream, is a file."""

from __future__ import annotations

import base64
import json
from typing import Any

import openai
import pytest

from gateway.runtime.state import SERVICES
from tests.conftest import FakeUpstream
from tests.e2e.test_cache import PROMPT, generate_raw, stored


@pytest.fixture
def gateway_overrides() -> dict[str, Any]:
    return {"cache_enabled": True}  # the default inline limit, 64 KiB


def body_files(gateway: Any) -> list[str]:
    bodies = gateway.app[SERVICES].cache.files.bodies
    return sorted(p.name for p in bodies.glob("*/*"))


async def test_a_small_body_is_kept_in_the_index_without_a_file(
    sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream, gateway: Any
) -> None:
    first = await generate_raw(sdk)
    await stored(gateway)
    index = gateway.app[SERVICES].store.cache
    (inline,) = await index.inline_bodies()
    assert await index.bodies() == [] and body_files(gateway) == []
    second = await generate_raw(sdk)
    assert (first[0], second[0]) == ("miss", "hit")
    assert base64.b64decode(second[2]) == base64.b64decode(first[2])
    assert json.loads(inline[1])["data"][0]["b64_json"] == first[2]
    assert len(fake_upstream.requests) == 1


@pytest.mark.sqlite_only
async def test_a_corrupted_inline_body_is_never_served_and_verify_finds_it(
    sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream, gateway: Any
) -> None:
    first = await generate_raw(sdk)
    await stored(gateway)
    store = gateway.app[SERVICES].store
    await store._all("UPDATE cache_bodies SET data = CAST('{}' AS BLOB)")  # same name, not it
    assert (await generate_raw(sdk))[0] == "miss"
    assert len(fake_upstream.requests) == 2
    await stored(gateway)
    repaired = await generate_raw(sdk)
    assert repaired[0] == "hit" and repaired[2] == first[2]

    await generate_raw(sdk, prompt="another otter")
    await stored(gateway)
    await store._all(
        "UPDATE cache_bodies SET data = CAST('broken' AS BLOB) WHERE sha256 ="
        " (SELECT body_sha256 FROM cache_entries ORDER BY created_at DESC LIMIT 1)"
    )
    report = await gateway.app[SERVICES].cache.verify()
    assert report == {"checked": 2, "corrupt": 1, "entries_dropped": 1}
    assert (await generate_raw(sdk))[0] == "hit"  # the intact one stays


@pytest.mark.parametrize(
    "gateway_overrides", [{"cache_enabled": True, "cache_inline_max_bytes": 100}]
)
async def test_a_body_past_the_limit_and_a_stream_are_files(
    sdk: openai.AsyncOpenAI, gateway: Any
) -> None:
    await generate_raw(sdk)
    stream = await sdk.images.generate(**PROMPT, stream=True, partial_images=1)
    async for _ in stream:
        pass
    await stored(gateway)
    index = gateway.app[SERVICES].store.cache
    assert await index.inline_bodies() == []
    files = [sha for sha, _ in await index.bodies()]
    assert len(files) == 2 and sorted(files) == body_files(gateway)
