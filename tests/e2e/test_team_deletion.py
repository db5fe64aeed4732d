"""Deleting a team: refused while it has live keys unless forced; its ledger rows stay."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.settings import Settings
from tests.conftest import ADMIN_TOKEN, FakeUpstream, auth
from tests.e2e.test_accounting import LOW, gateway_with_key
from tests.e2e.test_cli import gateway as run_cli

# Starts the servers it tests itself (or needs no fixture's database): run once, not again on
# PostgreSQL.
pytestmark = pytest.mark.one_pass

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def test_delete_a_team_through_the_admin_api(
    aiohttp_client: Any, fake_upstream: FakeUpstream, make_settings: Callable[..., Settings]
) -> None:
    client, secret, _ = await gateway_with_key(
        aiohttp_client, make_settings(upstream_url=fake_upstream.url)
    )
    spent = await client.post("/v1/images/generations", json=LOW, headers=auth(secret))
    cost = spent.headers["x-gateway-cost-usd"]

    refused = await client.delete("/admin/teams/t", headers=ADMIN)
    assert (refused.status, (await refused.json())["error"]["code"]) == (409, "team_has_live_keys")
    forced = await client.delete("/admin/teams/t?force=true", headers=ADMIN)
    assert await forced.json() == {"deleted": "t", "revoked_keys": 1}

    assert (
        await client.post("/v1/images/generations", json=LOW, headers=auth(secret))
    ).status == 401
    listed = await (await client.get("/admin/teams", headers=ADMIN)).json()
    assert listed["data"] == []
    assert (await client.get("/admin/teams/t", headers=ADMIN)).status == 404
    # The ledger rows stay, and the report still counts them (under the deleted team's mark).
    report = await (await client.get("/admin/usage?group_by=team", headers=ADMIN)).json()
    assert report["total"]["cost_usd"] == cost and report["total"]["requests"] == 1
    assert report["data"][0]["team"].startswith("t~deleted~")
    # The name is free again.
    again = await client.post("/admin/teams", json={"name": "t"}, headers=ADMIN)
    assert again.status == 201 and (await again.json())["spent_usd"] == "0.00"
    assert (await client.delete("/admin/teams/nobody", headers=ADMIN)).status == 404


def test_delete_a_team_from_the_cli(tmp_path: Path) -> None:
    run_cli(tmp_path, "teams", "create", "t")
    run_cli(tmp_path, "keys", "create", "--team", "t")
    refused = run_cli(tmp_path, "teams", "delete", "t", check=False)
    assert refused.returncode == 4 and "live key" in refused.stderr  # refused
    assert refused.stderr.count("\n") == 1
    out = run_cli(tmp_path, "teams", "delete", "t", "--force").stdout
    assert "revoked 1 key" in out and "ledger rows stay" in out
    assert "no teams yet" in run_cli(tmp_path, "teams", "list").stdout
