"""The cache-aware split: lines whose answer the team's cache holds are answered from it and left
out of the file sent upstream.

The cache's answers are written, as output lines, to a file of the gateway's own (uploaded
upstream beside the batch, so that whichever replica settles the batch can read it); the lines
the cache cannot answer go upstream as a new input file. Settlement merges the two outputs back
into input order (settle.py).

What holds: a line is left out only when its answer has been read whole from the cache and is
in the cached-part file; when anything in the split fails (upstream will not give the input
back, an upload fails), the batch goes upstream whole, as if nothing were cached.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from gateway.batch.results import CACHE_HIT_REQUEST_ID
from gateway.batch.upstream_api import UpstreamBatches
from gateway.errors import GatewayError
from gateway.runtime.services import Services
from gateway.store.records import BatchFile, BatchLine

log = logging.getLogger(__name__)


@dataclass
class Split:
    """`cached`: the custom_ids answered from the cache (their answers in `cached_file_id`);
    `upstream_file_id`: what goes upstream, None when nothing does."""

    upstream_file_id: str | None
    cached: set[str] = field(default_factory=set)
    cached_file_id: str | None = None


async def cached_in_index(services: Services, lines: list[BatchLine]) -> set[str]:
    """The custom_ids whose cache key has a fresh entry now (the index only: nothing read)."""
    keys = [line.cache_key for line in lines if line.cache_key is not None]
    fresh = await services.store.fresh_cache_keys(keys, time.time())
    return {line.custom_id for line in lines if line.cache_key in fresh}


async def split_by_cache(
    services: Services, file: BatchFile, lines: list[BatchLine], wanted: set[str], directory: Path
) -> Split:
    """Answer the `wanted` lines from the cache, and make the file of the rest."""
    whole = Split(file.id)
    if not wanted:
        return whole
    api = UpstreamBatches(services.upstream)
    cached_path = directory / "cached.jsonl"
    cached = await _write_cached(services, lines, wanted, cached_path)
    if not cached:
        return whole
    try:
        rest_id = None
        if len(cached) < len(lines):
            rest_id = await _upload_rest(api, file, cached, directory)
        uploaded = await api.upload(cached_path, "cached.jsonl", "user_data")
    except GatewayError as exc:
        log.warning(
            "batch of file %s goes upstream whole: the cache-aware split failed (%s)",
            file.id, exc.message,
        )  # fmt: skip
        return whole
    return Split(rest_id, cached, str(uploaded["id"]))


async def _write_cached(
    services: Services, lines: list[BatchLine], wanted: set[str], path: Path
) -> set[str]:
    """The cached lines' answers, as output lines, into `path`; the custom_ids written."""
    cache, store = services.cache, services.store
    written: set[str] = set()
    file = await asyncio.to_thread(path.open, "wb")
    try:
        for line in lines:
            if line.custom_id not in wanted or line.cache_key is None:
                continue
            entry = await store.cache.get(line.cache_key, time.time())
            body = None if entry is None else await cache.read_whole(entry)
            if entry is None or body is None:
                continue
            try:
                answer = json.loads(body)
            except ValueError:
                continue
            cache.count_hit(entry.key)
            output = {
                "id": f"batch_req_gw_{secrets.token_hex(12)}",
                "custom_id": line.custom_id,
                "response": {
                    "status_code": 200,
                    "request_id": CACHE_HIT_REQUEST_ID,
                    "body": answer,
                },
                "error": None,
                "gateway": {"cache": "hit", "saved_nanos": entry.cost_nanos},
            }
            await asyncio.to_thread(file.write, json.dumps(output).encode() + b"\n")
            written.add(line.custom_id)
    finally:
        await asyncio.to_thread(file.close)
    return written


async def _upload_rest(
    api: UpstreamBatches, file: BatchFile, cached: set[str], directory: Path
) -> str:
    """The input without its cached lines, as a new upstream file: its id."""
    original, rest = directory / "input.jsonl", directory / "rest.jsonl"
    await api.download(file.id, original)
    await asyncio.to_thread(_without, original, rest, cached)
    uploaded = await api.upload(rest, file.filename, "batch")
    return str(uploaded["id"])


def _without(source: Path, into: Path, cached: set[str]) -> None:
    """`source`'s lines but those whose custom_id is in `cached` (blocking)."""
    with source.open("rb") as lines, into.open("wb") as out:
        for raw in lines:
            if not raw.strip():
                continue
            try:
                custom_id = json.loads(raw).get("custom_id")
            except (ValueError, AttributeError):
                custom_id = None
            if custom_id not in cached:
                out.write(raw if raw.endswith(b"\n") else raw + b"\n")
