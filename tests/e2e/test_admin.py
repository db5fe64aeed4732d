"""The admin API: off without a token, closed without the right one, exact money."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import pytest

from gateway.app import create_app
from gateway.settings import Settings
from tests.conftest import ADMIN_TOKEN

# Starts the servers it tests itself (or needs no fixture's database): run once, not again on
# PostgreSQL.
pytestmark = pytest.mark.one_pass

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def admin(aiohttp_client: Any, make_settings: Callable[..., Settings]) -> Any:
    return await aiohttp_client(create_app(make_settings()))


async def test_admin_is_disabled_without_a_token(
    aiohttp_client: Any, make_settings: Callable[..., Settings]
) -> None:
    client = await aiohttp_client(create_app(make_settings(admin_token=None)))
    for headers in ({}, {"Authorization": "Bearer "}, ADMIN):
        response = await client.get("/admin/teams", headers=headers)
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "admin_disabled"


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN_TOKEN}]
)
async def test_admin_needs_the_token(admin: Any, headers: dict[str, str]) -> None:
    for method, path in [("GET", "/admin/teams"), ("POST", "/admin/keys"), ("GET", "/admin/nope")]:
        response = await admin.request(method, path, headers=headers)
        assert response.status == 401, path
        assert (await response.json())["error"]["code"] == "invalid_admin_token"


async def test_teams_crud_with_exact_money(admin: Any) -> None:
    response = await admin.post(
        "/admin/teams",
        data=b'{"name": "design", "budget_usd": 12.345678901, "budget_period": "month", "rpm": 60}',
        headers=ADMIN,
    )
    assert response.status == 201
    team = await response.json()
    assert team["budget_usd"] == "12.345678901"  # a JSON number, never rounded through float
    assert team["budget_period"] == "month" and team["rpm"] == 60 and team["ipm"] is None

    response = await admin.post("/admin/teams", json={"name": "design"}, headers=ADMIN)
    assert response.status == 409

    response = await admin.patch(
        "/admin/teams/design", json={"budget_usd": "20", "ipm": 5}, headers=ADMIN
    )
    team = await response.json()
    assert team["budget_usd"] == "20.00" and team["ipm"] == 5 and team["rpm"] == 60

    response = await admin.patch("/admin/teams/design", json={"budget_usd": None}, headers=ADMIN)
    assert (await response.json())["budget_usd"] is None

    listing = await (await admin.get("/admin/teams", headers=ADMIN)).json()
    assert [t["name"] for t in listing["data"]] == ["design"]
    assert (await admin.get("/admin/teams/nobody", headers=ADMIN)).status == 404


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"name": "x", "budget_usd": -1}, "budget_usd"),
        ({"name": "x", "budget_usd": "lots"}, "budget_usd"),
        ({"name": "x", "budget_usd": "0.0000000001"}, "budget_usd"),
        ({"name": "x", "budget_period": "year"}, "budget_period"),
        ({"name": "has space"}, "name"),
        ({"name": "x", "rpm": -5}, "rpm"),
        ({"name": "x", "surprise": 1}, "surprise"),
    ],
)
async def test_invalid_team_input_is_400_naming_the_field(
    admin: Any, body: dict[str, Any], param: str
) -> None:
    response = await admin.post("/admin/teams", json=body, headers=ADMIN)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"


async def test_keys_are_shown_once_and_stored_only_as_hashes(
    admin: Any, make_settings: Callable[..., Settings]
) -> None:
    await admin.post("/admin/teams", json={"name": "design"}, headers=ADMIN)
    response = await admin.post(
        "/admin/keys", json={"team": "design", "name": "ci", "budget_usd": "5"}, headers=ADMIN
    )
    assert response.status == 201
    created = await response.json()
    secret = created["key"]
    assert secret.startswith("sk-gw-") and created["team"] == "design"
    assert created["budget_usd"] == "5.00"

    shown = await (await admin.get(f"/admin/keys/{created['id']}", headers=ADMIN)).json()
    assert "key" not in shown and shown["prefix"] == secret[: len(shown["prefix"])]
    listing = await (await admin.get("/admin/keys?team=design", headers=ADMIN)).json()
    assert [k["id"] for k in listing["data"]] == [created["id"]]
    assert secret not in str(listing)

    db_path = make_settings().data_dir / "gateway.db"
    with sqlite3.connect(db_path) as db:
        dump = "\n".join(db.iterdump())
    assert secret not in dump and secret[len("sk-gw-") + 6 :] not in dump

    patched = await admin.patch(f"/admin/keys/{created['id']}", json={"rpm": 3}, headers=ADMIN)
    assert (await patched.json())["rpm"] == 3


async def test_revoked_key_is_refused(admin: Any) -> None:
    await admin.post("/admin/teams", json={"name": "design"}, headers=ADMIN)
    created = await (await admin.post("/admin/keys", json={"team": "design"}, headers=ADMIN)).json()
    user = {"Authorization": f"Bearer {created['key']}"}
    body = {"model": "gpt-image-1"}  # refused for the key before the body is looked at

    response = await admin.delete(f"/admin/keys/{created['id']}", headers=ADMIN)
    assert (await response.json())["revoked"] is True
    response = await admin.post("/v1/images/generations", json=body, headers=user)
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "invalid_api_key"


async def test_key_for_a_missing_team_is_404(admin: Any) -> None:
    response = await admin.post("/admin/keys", json={"team": "ghost"}, headers=ADMIN)
    assert response.status == 404


@pytest.mark.parametrize(
    ("method", "path", "raw"),
    [
        # Found by the schemathesis run: a limit past the store's 64-bit integers was a 500.
        ("PATCH", "/admin/keys/{key}", '{"ipm": 58447692739516607519680102400}'),
        ("PATCH", "/admin/teams/t", '{"rpm": 10000000000}'),
        ("PATCH", "/admin/teams/t", '{"budget_usd": "10000000000"}'),
        # Text that is not Unicode could not be stored or looked up: it was a 500 too.
        ("PATCH", "/admin/keys/{key}", '{"name": "a\\ud800b"}'),
        ("POST", "/admin/keys", '{"team": "t\\udfff"}'),
        ("POST", "/admin/cache/purge", '{"team": "\\ud800"}'),
    ],
)
async def test_what_the_store_cannot_hold_is_a_400(
    admin: Any, method: str, path: str, raw: str
) -> None:
    await admin.post("/admin/teams", json={"name": "t"}, headers=ADMIN)
    created = await admin.post("/admin/keys", json={"team": "t"}, headers=ADMIN)
    key_id = (await created.json())["id"]
    response = await admin.request(
        method,
        path.replace("{key}", key_id),
        data=raw.encode(),
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    body = await response.json()
    assert response.status == 400, body
    assert body["error"]["code"] == "invalid_value"
