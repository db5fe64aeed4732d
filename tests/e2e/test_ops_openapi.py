"""The published OpenAPI 3.1 description: the same in the repository and at GET /openapi.json,
and what the gateway answers to generated input (schemathesis, bounded to about a minute): no
5xx, and every response as the description says."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.ops.openapi import rendered

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from fuzz import fuzz_gateway  # noqa: E402

# Starts the servers it tests itself (or needs no fixture's database): run once, not again on
# PostgreSQL.
pytestmark = pytest.mark.one_pass


def test_the_repository_copy_is_what_the_gateway_serves(gateway: Any) -> None:
    assert (ROOT / "docs" / "openapi.json").read_text() == rendered(), (
        "docs/openapi.json is stale: run `gateway openapi > docs/openapi.json`"
    )


async def test_get_openapi_json(gateway: Any) -> None:
    response = await gateway.get("/openapi.json")
    assert response.status == 200
    document = await response.json()
    assert document["openapi"] == "3.1.0"
    paths = set(document["paths"])
    assert {"/v1/images/generations", "/v1/images/edits", "/admin/teams", "/admin/keys"} <= paths
    assert {"/healthz", "/readyz", "/openapi.json", "/admin/usage", "/admin/cache/purge"} <= paths


def test_generated_input_gets_no_5xx_and_only_described_answers() -> None:
    run = fuzz_gateway(max_examples=6, max_time_s=45, seed=1)
    assert run.returncode == 0, run.output[-6000:]
    assert run.cases > 500, run.output[-2000:]
