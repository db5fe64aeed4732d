"""The console opens only to a signed-in admin session (gateway/console: the guard, sign-in and
session.py): not to a client key, not to a forged, expired or foreign cookie, and no form
without its CSRF token."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from itsdangerous import URLSafeTimedSerializer

from gateway.app import create_app
from gateway.console.session import COOKIE
from gateway.settings import Settings
from tests.conftest import ADMIN_TOKEN

# Starts the servers it tests itself (or needs no fixture's database): run once, not again on
# PostgreSQL.
pytestmark = pytest.mark.one_pass

PAGES = ["/console/", "/console/teams", "/console/keys", "/console/usage", "/console/images",
         "/console/prices", "/console/cache", "/console/usage.csv"]  # fmt: skip


@pytest.fixture
async def console(aiohttp_client: Any, make_settings: Callable[..., Settings]) -> Any:
    return await aiohttp_client(create_app(make_settings()))


async def sign_in(console: Any) -> str:
    """Sign in; the session's CSRF token."""
    response = await console.post("/console/login", data={"token": ADMIN_TOKEN})
    assert response.status == 200 and response.url.path == "/console/"
    page = await (await console.get("/console/teams")).text()
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match is not None
    return match.group(1)


async def test_without_a_session_every_page_sends_to_sign_in(console: Any) -> None:
    for path in PAGES:
        response = await console.get(path, allow_redirects=False)
        assert (response.status, response.headers["Location"]) == (303, "/console/login"), path
    login = await console.get("/console/login")
    assert login.status == 200 and "Admin token" in await login.text()
    assert (await console.get("/console/static/htmx.min.js")).status == 200


async def test_a_client_key_opens_nothing(console: Any, key: str) -> None:
    for path in PAGES:
        response = await console.get(
            path, headers={"Authorization": f"Bearer {key}"}, allow_redirects=False
        )
        assert response.status == 303, path
    response = await console.post(
        "/console/teams", data={"name": "x"}, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status == 401
    # Nor does the admin token as a bearer: the console is a browser's, by its cookie only.
    response = await console.get(
        "/console/", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, allow_redirects=False
    )
    assert response.status == 303


async def test_the_wrong_token_signs_no_one_in(console: Any) -> None:
    response = await console.post("/console/login", data={"token": "guess"})
    assert response.status == 401 and COOKIE not in response.cookies
    assert "not the admin token" in await response.text()


async def test_the_session_cookie_is_strict(console: Any) -> None:
    response = await console.post(
        "/console/login", data={"token": ADMIN_TOKEN}, allow_redirects=False
    )
    cookie = response.cookies[COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert cookie["path"] == "/console" and int(cookie["max-age"]) == 12 * 3600


@pytest.mark.parametrize(
    "forge",
    [
        lambda: URLSafeTimedSerializer("not-our-key", salt="console-session").dumps({"csrf": "x"}),
        lambda: "garbage",
    ],
)
async def test_a_forged_cookie_is_no_session(console: Any, forge: Callable[[], str]) -> None:
    console.session.cookie_jar.update_cookies({COOKIE: forge()})
    response = await console.get("/console/", allow_redirects=False)
    assert response.status == 303


async def test_an_expired_session_is_no_session(
    console: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await sign_in(console)
    monkeypatch.setattr("gateway.console.session.SESSION_S", -1)
    response = await console.get("/console/", allow_redirects=False)
    assert response.status == 303


async def test_every_form_needs_the_sessions_csrf_token(console: Any) -> None:
    csrf = await sign_in(console)
    assert (await console.post("/console/teams", data={"name": "a"})).status == 403
    assert (await console.post("/console/teams", data={"name": "a", "csrf": "x"})).status == 403
    # The right token, but from another site's page.
    response = await console.post(
        "/console/teams", data={"name": "a", "csrf": csrf},
        headers={"Origin": "https://evil.example"},
    )  # fmt: skip
    assert response.status == 403
    assert (await (await console.get("/admin/teams", headers={"Authorization":
            f"Bearer {ADMIN_TOKEN}"})).json())["data"] == []  # fmt: skip
    response = await console.post("/console/teams", data={"name": "a", "csrf": csrf})
    assert response.status == 200 and response.url.path == "/console/teams"
    # The header htmx sends does as well.
    response = await console.post(
        "/console/teams", data={"name": "b"}, headers={"X-CSRF-Token": csrf}
    )
    assert response.status == 200


async def test_signing_out_ends_the_session(console: Any) -> None:
    csrf = await sign_in(console)
    response = await console.post("/console/logout", data={"csrf": csrf})
    assert response.url.path == "/console/login"
    assert (await console.get("/console/", allow_redirects=False)).status == 303


async def test_without_an_admin_token_the_console_says_how_to_turn_it_on(
    aiohttp_client: Any, make_settings: Callable[..., Settings]
) -> None:
    console = await aiohttp_client(create_app(make_settings(admin_token=None)))
    for path in ("/console/", "/console/login"):
        response = await console.get(path)
        assert response.status == 403 and "GATEWAY_ADMIN_TOKEN" in await response.text()
    assert (await console.post("/console/login", data={"token": ""})).status == 403
