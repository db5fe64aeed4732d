"""The audit trail: every change through the admin API, the console and the CLI is kept, with
its actor and the record before and after, and never a key's secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.e2e.test_console import sign_in

pytestmark = pytest.mark.one_pass  # runs the CLI as a process

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def call(gateway: Any, method: str, path: str, **body: Any) -> Any:
    response = await gateway.request(method, path, json=body or None, headers=ADMIN)
    assert response.status < 300, await response.text()
    return await response.json()


async def test_admin_changes_are_kept_with_before_and_after(gateway: Any) -> None:
    await call(gateway, "POST", "/admin/teams", name="design", budget_usd="10")
    await call(gateway, "PATCH", "/admin/teams/design", budget_usd="25", max_n=2)
    key = await call(gateway, "POST", "/admin/keys", team="design")
    rotated = await call(gateway, "POST", f"/admin/keys/{key['id']}/rotate")
    await call(gateway, "DELETE", f"/admin/keys/{key['id']}")
    await call(gateway, "POST", "/admin/cache/purge", team="design")

    entries = (await call(gateway, "GET", "/admin/audit"))["data"]
    assert [e["action"] for e in entries] == [
        "cache.purge",
        "key.revoke",
        "key.rotate",
        "key.create",
        "team.update",
        "team.create",
    ]
    by_action = {e["action"]: e for e in entries}
    update = by_action["team.update"]
    assert update["target"] == "design" and update["actor"].startswith("admin-api (")
    assert update["before"]["budget_usd"] == "10.00" and update["after"]["budget_usd"] == "25.00"
    assert update["after"]["policy"] == {"max_n": 2}
    assert by_action["key.revoke"]["before"]["revoked"] is False
    assert by_action["key.revoke"]["after"]["revoked"] is True
    assert by_action["cache.purge"]["target"] == "team:design"
    text = json.dumps(entries)
    assert key["key"] not in text and rotated["key"] not in text  # no secret, ever
    only = (await call(gateway, "GET", "/admin/audit?action=key.rotate"))["data"]
    assert [e["action"] for e in only] == ["key.rotate"]


async def test_console_changes_name_the_session(gateway: Any) -> None:
    await call(gateway, "POST", "/admin/teams", name="ops")
    csrf = await sign_in(gateway)
    response = await gateway.post(
        "/console/teams/ops", data={"csrf": csrf, "budget_usd": "7", "budget_period": "month"}
    )
    assert response.status < 400
    (entry,) = (await call(gateway, "GET", "/admin/audit?action=team.update"))["data"]
    assert entry["actor"].startswith("console (session ")
    assert entry["after"]["budget_usd"] == "7.00"
    audit_page = await (await gateway.get("/console/audit")).text()
    assert "team.update" in audit_page and "console (session" in audit_page


def test_cli_changes_name_the_os_user(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_DATA_DIR"] = str(tmp_path / "data")
    run = [sys.executable, "-m", "gateway"]
    subprocess.run(
        [*run, "teams", "create", "cli-team", "--budget-usd", "3"],
        env=env,
        check=True,
        capture_output=True,
    )
    shown = subprocess.run(
        [*run, "audit", "--json"], env=env, check=True, capture_output=True, text=True
    )
    (entry,) = json.loads(shown.stdout)["data"]
    assert entry["action"] == "team.create" and entry["actor"].startswith("cli (")
    assert entry["after"]["budget_usd"] == "3.00"
