"""A batch across replicas (real `gateway serve` processes on one PostgreSQL): the replica that
created it is killed with -9 while the batch runs upstream, and another settles it, exactly once,
however many retrieves race on both; the books (ledger, spend counters, holds) agree."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any, Final

import asyncpg
import openai
import pytest

from tests.conftest import ADMIN_TOKEN, UPSTREAM_KEY
from tests.replica_processes import Replicas, replica_environment

pytestmark = pytest.mark.one_pass

GEN: Final = "/v1/images/generations"


def jsonl(count: int) -> io.BytesIO:
    lines = [
        {
            "custom_id": f"l{i}",
            "method": "POST",
            "url": GEN,
            "body": {"model": "gpt-image-1-mini", "prompt": f"a heron {i}", "quality": "low"},
        }
        for i in range(count)
    ]
    return io.BytesIO(b"".join(json.dumps(line).encode() + b"\n" for line in lines))


async def until_ended(sdk: openai.AsyncOpenAI, batch_id: str) -> Any:
    for _ in range(400):
        batch = await sdk.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            return batch
        await asyncio.sleep(0.05)
    raise AssertionError(f"batch {batch_id} did not end")


async def test_a_killed_replicas_batch_is_settled_once_by_another(
    pg_url: str, simulator: Any, tmp_path: Path
) -> None:
    upstream = await simulator(batch_ms=1500)
    env = replica_environment(
        upstream_url=upstream.url, upstream_api_key=UPSTREAM_KEY, admin_token=ADMIN_TOKEN,
        database_url=pg_url, cache_enabled="false",
    )  # fmt: skip
    async with Replicas(2, env, tmp_path) as replicas:
        await replicas.admin(0, "POST", "/admin/teams", ADMIN_TOKEN, name="t")
        secret = (await replicas.admin(0, "POST", "/admin/keys", ADMIN_TOKEN, team="t"))["key"]
        creator, other = replicas.sdk(0, secret), replicas.sdk(1, secret)
        uploaded = await creator.files.create(file=("in.jsonl", jsonl(4)), purpose="batch")
        batch = await creator.batches.create(
            input_file_id=uploaded.id, endpoint=GEN, completion_window="24h"
        )
        replicas.processes[0].kill()  # -9, with the batch in flight upstream
        await replicas.processes[0].wait()

        done = await until_ended(other, batch.id)
        # Many retrieves at once, each of which may start a settlement: one writes the rows.
        await asyncio.gather(*(other.batches.retrieve(batch.id) for _ in range(20)))

    assert done.status == "completed" and done.request_counts.completed == 4
    conn = await asyncpg.connect(pg_url)
    try:
        rows = await conn.fetch(
            "SELECT custom_id, cost_nanos FROM ledger WHERE batch_id = $1", batch.id
        )
        held = await conn.fetchval("SELECT COUNT(*) FROM reservations")
        spent = await conn.fetchval(
            "SELECT spent_nanos FROM spend WHERE scope = 'team' AND period = 'total'"
        )
    finally:
        await conn.close()
    assert sorted(row["custom_id"] for row in rows) == ["l0", "l1", "l2", "l3"]
    assert all(row["cost_nanos"] > 0 for row in rows)
    assert held == 0
    assert spent == sum(row["cost_nanos"] for row in rows)  # counted once
