"""Key rotation (admin API, CLI) and the quickstart key that `make run` rotates, not piles up."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.quickstart import _issue_quickstart_key
from gateway.runtime.state import SERVICES
from gateway.settings import Settings
from tests.conftest import ADMIN_TOKEN, FakeUpstream, auth
from tests.e2e.test_accounting import LOW, gateway_with_key
from tests.e2e.test_cli import gateway as run_cli

# Starts the servers it tests itself (or needs no fixture's database): run once, not again on
# PostgreSQL.
pytestmark = pytest.mark.one_pass

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def test_rotation_keeps_the_key_and_ends_the_old_secret(
    aiohttp_client: Any, fake_upstream: FakeUpstream, make_settings: Callable[..., Settings]
) -> None:
    client, old, key_id = await gateway_with_key(
        aiohttp_client, make_settings(upstream_url=fake_upstream.url), budget_usd="5"
    )
    spent = await client.post("/v1/images/generations", json=LOW, headers=auth(old))
    assert spent.status == 200
    rotated = await client.post(f"/admin/keys/{key_id}/rotate", headers=ADMIN)
    view = await rotated.json()
    assert rotated.status == 200 and view["id"] == key_id and view["budget_usd"] == "5.00"
    new = view["key"]
    assert new != old and new.startswith("sk-gw-")
    assert view["spent_usd"] == spent.headers["x-gateway-cost-usd"]  # history stays
    refused = await client.post("/v1/images/generations", json=LOW, headers=auth(old))
    assert refused.status == 401
    fine = await client.post("/v1/images/generations", json=LOW, headers=auth(new))
    assert fine.status == 200
    rows = await client.app[SERVICES].store._all(
        "SELECT DISTINCT key_id FROM ledger WHERE status = 200"
    )
    assert rows == [(key_id,)]
    await client.delete(f"/admin/keys/{key_id}", headers=ADMIN)
    again = await client.post(f"/admin/keys/{key_id}/rotate", headers=ADMIN)
    assert (again.status, (await again.json())["error"]["code"]) == (409, "key_revoked")


def test_the_cli_rotates_a_key(tmp_path: Path) -> None:
    run_cli(tmp_path, "teams", "create", "t")
    out = run_cli(tmp_path, "keys", "create", "--team", "t").stdout
    key_id, old = out.split()[2], out.strip().splitlines()[-1]
    rotated = run_cli(tmp_path, "keys", "rotate", key_id).stdout
    assert key_id in rotated and "no longer works" in rotated
    new = rotated.strip().splitlines()[-1]
    assert new.startswith("sk-gw-") and new != old
    run_cli(tmp_path, "keys", "revoke", key_id)
    refused = run_cli(tmp_path, "keys", "rotate", key_id, check=False)
    assert refused.returncode == 4 and "revoked" in refused.stderr  # refused
    assert "Traceback" not in refused.stderr


async def test_make_run_rotates_its_quickstart_key_instead_of_piling_them_up(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    first, rotated_first = await _issue_quickstart_key(settings)
    second, rotated_second = await _issue_quickstart_key(settings)
    third, _ = await _issue_quickstart_key(settings)
    assert (rotated_first, rotated_second) == (False, True)
    assert len({first, second, third}) == 3
    listing = run_cli(tmp_path, "keys", "list", "--team", "default").stdout
    assert listing.count("quickstart") == 1  # one key, rotated, not three
