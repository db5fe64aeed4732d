"""Attribution through the official SDK: X-Gateway-Tags and the body's `user` kept on each
ledger row; /admin/usage filters and groups by them, each group's cost the sum of the cost
headers its requests were sent; a bad header is refused before upstream and never forwarded."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import openai
import pytest

from tests.conftest import ADMIN_TOKEN, FakeUpstream

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def usage(gateway: Any, **query: str) -> dict[str, Any]:
    response = await gateway.get("/admin/usage", params=query, headers=ADMIN)
    assert response.status == 200, await response.text()
    return {row[query.get("group_by", "team")]: row for row in (await response.json())["data"]}


async def test_tags_and_users_are_grouped_and_sum_to_the_cost_headers(
    gateway: Any, sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream
) -> None:
    sent: dict[tuple[str, str], Decimal] = {}
    asks: list[tuple[str, str, Any]] = [
        ("project=atlas,env=prod", "ann", "low"),
        ("project=atlas", "bo", "medium"),
        ("project=zephyr,env=dev", "ann", "low"),
        ("", "cy", "low"),
    ]
    for tags, user, quality in asks:
        headers = {"X-Gateway-Tags": tags} if tags else {}
        raw = await sdk.images.with_raw_response.generate(
            model="gpt-image-1-mini",
            prompt=f"a map for {user}",
            quality=quality,
            size="1024x1024",
            user=user,
            extra_headers=headers,
        )
        project = dict(p.split("=") for p in tags.split(",") if p).get("project", "(untagged)")
        cost = Decimal(raw.headers["x-gateway-cost-usd"])
        sent[("project", project)] = sent.get(("project", project), Decimal(0)) + cost
        sent[("user", user)] = sent.get(("user", user), Decimal(0)) + cost
    assert all(
        "x-gateway-tags" not in {k.lower() for k in r.headers} for r in fake_upstream.requests
    )

    by_project = await usage(gateway, group_by="tag:project")
    assert {k: Decimal(v["cost_usd"]) for k, v in by_project.items()} == {
        k[1]: v for k, v in sent.items() if k[0] == "project"
    }
    assert by_project["atlas"]["requests"] == 2
    by_user = await usage(gateway, group_by="user")
    assert {k: Decimal(v["cost_usd"]) for k, v in by_user.items()} == {
        k[1]: v for k, v in sent.items() if k[0] == "user"
    }
    atlas_users = await usage(gateway, group_by="user", tag="project:atlas")
    assert set(atlas_users) == {"ann", "bo"}
    prod = await usage(gateway, group_by="team", tag="env:prod", user="ann")
    assert [row["requests"] for row in prod.values()] == [1]
    csv = await (
        await gateway.get(
            "/admin/usage", params={"group_by": "tag:env", "format": "csv"}, headers=ADMIN
        )
    ).text()
    assert csv.splitlines()[0].startswith("tag:env,") and "prod," in csv


@pytest.mark.parametrize(
    "header",
    [
        "project",
        "a=b=c",
        ",".join(f"k{i}=v" for i in range(11)),
        "k=" + "v" * 65,
        "k!=v",
        "k=1,k=2",
    ],
)
async def test_a_bad_tags_header_is_refused_before_upstream(
    sdk: openai.AsyncOpenAI, fake_upstream: FakeUpstream, header: str
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await sdk.images.generate(
            model="gpt-image-1-mini",
            prompt="p",
            quality="low",
            extra_headers={"X-Gateway-Tags": header},
        )
    assert (refused.value.code, refused.value.param) == ("invalid_tags", "X-Gateway-Tags")
    assert fake_upstream.requests == []


async def test_an_unknown_key_or_a_reversed_range_is_an_error_not_zeros(gateway: Any) -> None:
    for query, param in (
        ({"key": "key_nope"}, "key"),
        ({"since": "2026-12-05", "until": "2026-12-01"}, "until"),
        ({"tag": "no-colon"}, "tag"),
        ({"group_by": "tag:"}, "group_by"),
    ):
        response = await gateway.get("/admin/usage", params=query, headers=ADMIN)
        assert response.status == 400
        assert (await response.json())["error"]["param"] == param
