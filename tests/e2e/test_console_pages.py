"""The console's pages and forms after SDK traffic (gateway/console/pages.py), signed in as an
operator would be: cached images as thumbnails, prices, the cache's purge with its
confirmation, keys rotated with the secret shown once, and forms that fail saying why."""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Callable
from typing import Any

import openai
import pytest
from PIL import Image

from gateway.app import create_app
from gateway.console.thumbnails import THUMBNAIL_PX
from gateway.settings import Settings
from tests.conftest import ADMIN_TOKEN, FakeUpstream, Reply, ScriptedUpstream
from tests.e2e.test_cache import stored
from tests.e2e.test_console import sign_in

# Starts the servers it tests itself (or needs no fixture's database): run once, not again on
# PostgreSQL.
pytestmark = pytest.mark.one_pass

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def console(
    aiohttp_client: Any, fake_upstream: FakeUpstream, make_settings: Callable[..., Settings]
) -> Any:
    settings = make_settings(upstream_url=fake_upstream.url, cache_enabled=True)
    return await aiohttp_client(create_app(settings))


async def traffic(console: Any, team: str, prompt: str) -> bytes:
    """One generation with a new key of `team`, stored in the cache; the image it returned."""
    response = await console.post("/admin/keys", json={"team": team}, headers=ADMIN)
    key = (await response.json())["key"]
    sdk = openai.AsyncOpenAI(base_url=str(console.make_url("/v1")), api_key=key, max_retries=0)
    answer = await sdk.images.generate(
        model="gpt-image-1", prompt=prompt, quality="low", size="1024x1024"
    )
    await sdk.close()
    await stored(console)
    assert answer.data is not None
    return base64.b64decode(answer.data[0].b64_json or "")


async def test_cached_images_are_shown_per_team_as_small_thumbnails(console: Any) -> None:
    images = {}
    for team in ("design", "research"):
        await console.post("/admin/teams", json={"name": team}, headers=ADMIN)
        images[team] = await traffic(console, team, f"a lighthouse for {team}")
    await sign_in(console)
    page = await (await console.get("/console/images?team=design")).text()
    thumbnails = re.findall(r'src="(/console/images/[^"/]+/thumbnail.png)"', page)
    assert len(thumbnails) == 1 and "<h2" in page and "lighthouse" not in page
    assert re.findall(r"<h2[^>]*>([^<]+)</h2>", page) == ["design"]  # only the team asked for
    response = await console.get(thumbnails[0])
    assert response.content_type == "image/png"
    with Image.open(io.BytesIO(await response.read())) as picture:
        assert max(picture.size) <= THUMBNAIL_PX
    entry = thumbnails[0].removesuffix("/thumbnail.png")
    full = await console.get(f"{entry}/full")
    assert await full.read() == images["design"]  # the image itself, as the SDK got it
    details = await (await console.get(entry)).text()
    assert "quality low" in details and "Size 1024x1024" in details
    both = await (await console.get("/console/images")).text()
    assert both.count("thumbnail.png") == 2
    assert (await console.get("/console/images/no-such-key/thumbnail.png")).status == 404


async def test_the_cache_is_purged_only_when_confirmed(console: Any) -> None:
    await console.post("/admin/teams", json={"name": "design"}, headers=ADMIN)
    await traffic(console, "design", "a pier")
    csrf = await sign_in(console)
    unconfirmed = await console.post("/console/cache/purge", data={"csrf": csrf, "team": "design"})
    assert unconfirmed.status == 400 and "confirmation" in await unconfirmed.text()
    assert (await (await console.get("/admin/cache/stats", headers=ADMIN)).json())["entries"] == 1
    done = await console.post(
        "/console/cache/purge", data={"csrf": csrf, "team": "design", "confirm": "yes"}
    )
    assert "Purged 1 entries" in await done.text()
    assert (await (await console.get("/admin/cache/stats", headers=ADMIN)).json())["entries"] == 0


async def test_a_rotated_key_shows_its_new_secret_once(console: Any) -> None:
    await console.post("/admin/teams", json={"name": "design"}, headers=ADMIN)
    created = await (
        await console.post("/admin/keys", json={"team": "design"}, headers=ADMIN)
    ).json()
    csrf = await sign_in(console)
    response = await console.post(f"/console/keys/{created['id']}/rotate", data={"csrf": csrf})
    page = await response.text()
    secret = re.search(r"data-secret>([^<]+)<", page)
    assert secret is not None and secret.group(1) != created["key"]
    assert response.headers["Cache-Control"] == "no-store"
    bearer = {"Authorization": f"Bearer {secret.group(1)}"}
    standing = await console.get("/v1/gateway/key", headers=bearer)
    assert standing.status == 200
    assert secret.group(1) not in await (await console.get("/console/keys")).text()


async def test_a_form_that_fails_says_why_and_changes_nothing(console: Any) -> None:
    csrf = await sign_in(console)
    await console.post("/console/teams", data={"csrf": csrf, "name": "design"})
    again = await console.post("/console/teams", data={"csrf": csrf, "name": "design"})
    assert again.status == 400 and "exists already" in await again.text()
    bad = await console.post("/console/teams", data={"csrf": csrf, "name": "x", "rpm": "lots"})
    assert bad.status == 400 and "rpm" in await bad.text()
    teams = (await (await console.get("/admin/teams", headers=ADMIN)).json())["data"]
    assert [t["name"] for t in teams] == ["design"]


async def test_the_prices_page_shows_the_table_in_force(console: Any) -> None:
    await sign_in(console)
    page = await (await console.get("/console/prices")).text()
    version = re.search(r'data-figure="price-version">([^<]+)<', page)
    assert version is not None
    assert "gpt-image-1" in page and "dall-e-3" in page
    assert "Batch share" in page and '<td class="num">0.5</td>' in page


async def test_a_truncated_cached_image_is_a_placeholder_thumbnail_not_a_500(
    aiohttp_client: Any, scripted_upstream: ScriptedUpstream, make_settings: Callable[..., Settings]
) -> None:
    picture = io.BytesIO()
    Image.new("RGB", (300, 300), "red").save(picture, format="PNG")
    cut = picture.getvalue()[: len(picture.getvalue()) // 2]  # a PNG cut in half
    answer = {
        "created": 1,
        "data": [{"b64_json": base64.b64encode(cut).decode()}],
        "usage": {"input_tokens": 1, "output_tokens": 272},
    }
    scripted_upstream.replies.append(Reply(json.dumps(answer).encode()))
    settings = make_settings(upstream_url=scripted_upstream.url, cache_enabled=True)
    console = await aiohttp_client(create_app(settings))
    await console.post("/admin/teams", json={"name": "design"}, headers=ADMIN)
    key = await (await console.post("/admin/keys", json={"team": "design"}, headers=ADMIN)).json()
    body = {"model": "gpt-image-1.5", "prompt": "cut", "quality": "low"}
    headers = {"Authorization": f"Bearer {key['key']}"}
    assert (await console.post("/v1/images/generations", json=body, headers=headers)).status == 200
    await stored(console)
    await sign_in(console)
    page = await (await console.get("/console/images")).text()
    (thumbnail,) = re.findall(r'src="(/console/images/[^"/]+/thumbnail.png)"', page)
    response = await console.get(thumbnail)
    # Not a 500, nor a broken image: a placeholder that says the image cannot be read.
    assert response.status == 200 and response.content_type == "image/svg+xml"
    assert "cannot" in await response.text()


async def test_the_batches_page_lists_each_batch_with_its_lines_and_money(console: Any) -> None:
    await console.post("/admin/teams", json={"name": "cataloguers"}, headers=ADMIN)
    response = await console.post("/admin/keys", json={"team": "cataloguers"}, headers=ADMIN)
    key = (await response.json())["key"]
    sdk = openai.AsyncOpenAI(base_url=str(console.make_url("/v1")), api_key=key, max_retries=0)
    line = {
        "custom_id": "1",
        "method": "POST",
        "url": "/v1/images/generations",
        "body": {"model": "gpt-image-1-mini", "prompt": "a mug", "quality": "low"},
    }
    uploaded = await sdk.files.create(
        file=("in.jsonl", io.BytesIO(json.dumps(line).encode())), purpose="batch"
    )
    batch = await sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/images/generations", completion_window="24h"
    )
    for _ in range(100):
        if (await sdk.batches.retrieve(batch.id)).status == "completed":
            break
    await sdk.close()
    await sign_in(console)
    page = await (await console.get("/console/batches")).text()
    row = re.search(rf"<code>{batch.id}</code></th>(.*?)</tr>", page)
    assert row is not None
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row.group(1))
    assert cells[0] == "cataloguers" and cells[2] == "completed" and cells[4] == "1"
    assert cells[9] not in ("", "0.00")  # charged
    other = await (await console.get("/console/batches?team=nobody")).text()
    assert batch.id not in other and "No batches yet." in other


async def test_the_alerts_page_shows_webhooks_their_deliveries_and_thresholds(
    aiohttp_client: Any, fake_upstream: FakeUpstream, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(upstream_url=fake_upstream.url, webhook_allow_private=True)
    console = await aiohttp_client(create_app(settings))
    await console.post(
        "/admin/teams",
        json={"name": "ops", "budget_usd": "5", "alert_thresholds": ["0.5", "0.9"]},
        headers=ADMIN,
    )
    hook = await (
        await console.post("/admin/webhooks", json={"url": "http://127.0.0.1:9/x"}, headers=ADMIN)
    ).json()
    await sign_in(console)
    page = await (await console.get("/console/alerts")).text()
    assert hook["id"] in page and "http://127.0.0.1:9/x" in page and "Nothing sent yet." in page
    row = re.search(r"<th scope=\"row\">ops</th>(.*?)</tr>", page)
    assert row is not None and "50%, 90%" in row.group(1)
