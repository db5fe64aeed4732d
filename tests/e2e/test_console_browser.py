"""The console in a real browser (Chromium through Playwright, tests/browser.py), beside SDK
traffic: sign in, create a team and a key, send requests with that key through the official
SDK, see the figures equal the admin API's and the budget bar move, download the usage CSV and
find it equal to the admin API's, revoke the key and see the SDK refused. Screenshots of the
overview and the teams page go to $CONSOLE_SCREENSHOTS (docs/console.md's come from here:
`make screenshots`)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai

from gateway.app import create_app
from gateway.settings import Settings
from tests.browser import browser_page
from tests.conftest import ADMIN_TOKEN, FakeUpstream

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def test_an_operator_runs_a_team_from_the_console(
    aiohttp_client: Any,
    fake_upstream: FakeUpstream,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    settings = make_settings(upstream_url=fake_upstream.url, cache_enabled=True)
    gateway = await aiohttp_client(create_app(settings))
    base = str(gateway.make_url("")).rstrip("/")
    screenshots = Path(os.environ.get("CONSOLE_SCREENSHOTS") or tmp_path)
    async with browser_page(viewport={"width": 1280, "height": 900}, accept_downloads=True) as page:
        page.on("dialog", lambda dialog: dialog.accept())  # the confirmations of htmx
        # Signing in: the console sends an unsigned visitor to the sign-in page.
        await page.goto(f"{base}/console/")
        assert page.url.endswith("/console/login")
        await page.get_by_label("Admin token").fill("not-the-token")
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_text("That is not the admin token.").wait_for()
        await page.get_by_label("Admin token").fill(ADMIN_TOKEN)
        await page.get_by_role("button", name="Sign in").click()
        await page.get_by_role("heading", name="Overview").wait_for()

        # A team with a budget, and a key for it, made in the console.
        await page.get_by_role("link", name="Teams").click()
        await page.get_by_label("Name").fill("design")
        await page.locator("#new-budget").fill("0.50")
        await page.locator("#new-period").select_option("month")
        await page.get_by_role("button", name="Create team").click()
        row = page.locator("tr[data-team=design]")
        await row.wait_for()
        meter = row.get_by_role("meter")
        assert await meter.get_attribute("aria-valuenow") == "0.0"
        await page.get_by_role("link", name="Keys").click()
        await page.locator("#key-team").select_option("design")
        await page.get_by_label("Name (optional)").fill("ci")
        await page.get_by_role("button", name="Create key").click()
        secret = (await page.locator("[data-secret]").inner_text()).strip()
        assert secret.startswith("sk-gw-")

        # Traffic, as users send it: three requests, the second a repeat the cache answers.
        sdk = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=secret, max_retries=0)
        for prompt in ("a heron", "a heron", "a crane"):
            await sdk.images.generate(model="gpt-image-1", prompt=prompt, quality="low")

        # The overview's figures are the admin API's.
        month = dt.datetime.now(dt.UTC).strftime("%Y-%m-01")
        api = await (await gateway.get(f"/admin/usage?since={month}", headers=ADMIN)).json()
        await page.get_by_role("link", name="Overview").click()
        await page.get_by_role("heading", name="Overview").wait_for()
        shown = await page.locator("[data-figure=month-cost]").inner_text()
        assert shown == f"${api['total']['cost_usd']}" and api["total"]["requests"] == 3
        saved = await page.locator("[data-figure=saved]").inner_text()
        assert saved == f"${api['total']['saved_usd']}" and Decimal(saved[1:]) > 0
        team_cell = page.locator("[data-team-month=design]")
        assert await team_cell.inner_text() == f"${api['data'][0]['cost_usd']}"
        assert await page.locator("[data-figure=hit-ratio]").inner_text() == "33.3%"
        await page.locator(".plot canvas").first.wait_for()  # the charts were drawn
        await page.screenshot(path=str(screenshots / "console-overview.png"), full_page=True)

        # The budget bar moved by what was spent.
        await page.get_by_role("link", name="Teams").click()
        used = Decimal(await meter.get_attribute("aria-valuenow") or "0")
        team = await (await gateway.get("/admin/teams/design", headers=ADMIN)).json()
        assert used == round(Decimal(team["spent_usd"]) / Decimal("0.50") * 100, 1) and used > 0
        # A smaller budget, edited in the console: the bar is past 80%, and says so in words.
        await row.get_by_text("Edit design").click()
        await row.get_by_label("Budget (USD)").fill("0.025")
        await row.get_by_role("button", name="Save design").click()
        await page.locator("tr[data-team=design] .bar.warning").wait_for()
        team = await (await gateway.get("/admin/teams/design", headers=ADMIN)).json()
        assert team["budget_usd"] == "0.025"
        used = Decimal(await meter.get_attribute("aria-valuenow") or "0")
        assert used == round(Decimal(team["spent_usd"]) / Decimal("0.025") * 100, 1)
        assert 80 < used <= 95 and "(over 80%)" in await row.inner_text()
        await page.screenshot(path=str(screenshots / "console-teams.png"), full_page=True)

        # The usage CSV is the admin API's for the same filters.
        await page.get_by_role("link", name="Usage").click()
        await page.get_by_label("Team", exact=True).select_option("design")
        await page.get_by_label("Group by", exact=True).select_option("model")
        await page.get_by_role("button", name="Show").click()
        await page.locator("[data-figure=usage-total]").wait_for()
        async with page.expect_download() as download_info:
            await page.get_by_role("link", name="Download CSV").click()
        download = await download_info.value
        csv_path = tmp_path / "usage.csv"
        await download.save_as(csv_path)
        api_csv = await (
            await gateway.get("/admin/usage?team=design&group_by=model&format=csv", headers=ADMIN)
        ).text()
        assert csv_path.read_text() == api_csv and api_csv.count("\n") == 2

        # Revoking the key in the console: the SDK is refused at once.
        await page.get_by_role("link", name="Keys").click()
        await page.get_by_role("button", name="Revoke").click()
        await page.locator("tr[data-key] .tag.revoked").wait_for()
        try:
            await sdk.images.generate(model="gpt-image-1", prompt="a stork", quality="low")
        except openai.AuthenticationError:
            pass
        else:
            raise AssertionError("the revoked key was still accepted")
        await sdk.close()

        # Signing out ends the session: the pages are closed again.
        await page.get_by_role("button", name="Sign out").click()
        await page.wait_for_url("**/console/login")  # signed out (on a busy machine, not at once)
        await page.goto(f"{base}/console/teams")
        assert page.url.endswith("/console/login")


PAGES = ("", "teams", "keys", "usage", "images", "batches", "prices", "cache", "alerts", "audit")


async def test_the_console_has_no_rough_edges_at_1280_and_400_px(
    aiohttp_client: Any,
    fake_upstream: FakeUpstream,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    settings = make_settings(upstream_url=fake_upstream.url, cache_enabled=True)
    gateway = await aiohttp_client(create_app(settings))
    base = str(gateway.make_url("")).rstrip("/")
    screenshots = Path(os.environ.get("CONSOLE_SCREENSHOTS") or tmp_path)
    await gateway.post("/admin/teams", json={"name": "design", "budget_usd": "1"}, headers=ADMIN)
    key = await (await gateway.post("/admin/keys", json={"team": "design"}, headers=ADMIN)).json()
    sdk = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=key["key"], max_retries=0)
    await sdk.images.generate(model="gpt-image-1", prompt="a heron", quality="low")
    await sdk.images.generate(model="dall-e-3", prompt="a crane", response_format="url")
    await sdk.close()
    for width in (1280, 400):
        async with browser_page(viewport={"width": width, "height": 900}) as page:
            errors: list[str] = []
            dialogs: list[str] = []

            def console_error(message: Any, found: list[str] = errors) -> None:
                if message.type == "error":
                    found.append(message.text)

            async def confirm(dialog: Any, seen: list[str] = dialogs) -> None:
                seen.append(dialog.message)
                await dialog.accept()

            page.on("console", console_error)
            page.on("dialog", confirm)
            # `/` leads to the console when it is on.
            await page.goto(f"{base}/")
            assert "/console/" in page.url
            await page.get_by_label("Admin token").fill(ADMIN_TOKEN)
            await page.get_by_role("button", name="Sign in").click()
            await page.get_by_role("heading", name="Overview").wait_for()
            # Every page fits the width: tables scroll inside their box, never the page.
            for name in PAGES:
                await page.goto(f"{base}/console/{name}")
                await page.wait_for_load_state("networkidle")
                wide = await page.evaluate(
                    "document.documentElement.scrollWidth - window.innerWidth"
                )
                assert wide <= 0, f"/console/{name} scrolls sideways by {wide}px at {width}px"
            # Charts start at $0.
            await page.goto(f"{base}/console/")
            await page.locator(".plot canvas").first.wait_for()
            lowest = await page.evaluate(
                "Array.from(document.querySelectorAll('[data-chart]'))"
                ".filter(e => e.plot).map(e => e.plot.scales.y.min)"
            )
            assert lowest and all(value == 0 for value in lowest), lowest
            await page.screenshot(
                path=str(screenshots / f"console-overview-{width}.png"), full_page=True
            )
            # A form's refusal shows its message next to the form.
            await page.goto(f"{base}/console/teams")
            await page.get_by_label("Name").fill("design")  # taken
            await page.get_by_role("button", name="Create team").click()
            await page.locator("p.error").wait_for()
            assert "design" in await page.locator("p.error").inner_text()
            # The team-name pattern is one the browser can use (no "invalid regular expression").
            assert not [e for e in errors if "regular expression" in e.lower()], errors
            # A dall-e `url` answer shows a placeholder, never a broken image.
            await page.goto(f"{base}/console/images")
            images = page.locator(".gallery img")
            await images.first.wait_for()
            widths = await images.evaluate_all("els => els.map(e => e.naturalWidth)")
            assert len(widths) == 2 and all(w > 0 for w in widths), widths
            # Revoking asks first, keeps the list's team filter, and says when, in UTC.
            await page.goto(f"{base}/console/keys?team=design")
            if width == 400:
                await page.get_by_role("button", name="Revoke").click()
                await page.locator("tr[data-key] .tag.revoked").wait_for()
                assert any("Revoke" in message for message in dialogs), dialogs
                assert "team=design" in page.url
                assert "UTC" in await page.locator("tr[data-key] .tag.revoked").inner_text()
            await page.screenshot(
                path=str(screenshots / f"console-keys-{width}.png"), full_page=True
            )
