"""Key and team policy through the admin API and the official SDK: a request outside its key's or
its team's allowed models, qualities, images, pixels, frames or partial images is refused 403
`permission_denied` naming the field, before anything is held or sent upstream; the key holder
sees its policy; PATCH changes one field and null clears it."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from gateway.runtime.state import SERVICES
from tests.conftest import ADMIN_TOKEN, FakeUpstream

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TOOL: Any = {"type": "image_generation", "model": "gpt-image-1.5", "quality": "low"}
OTHER_TOOL: Any = {**TOOL, "model": "gpt-image-2"}


async def admin(gateway: Any, method: str, path: str, **body: Any) -> Any:
    response = await gateway.request(method, path, json=body, headers=ADMIN)
    assert response.status < 300, await response.text()
    return await response.json()


def sdk_for(gateway: Any, secret: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=str(gateway.make_url("/v1")), api_key=secret, max_retries=0)


async def refused(call: Any) -> openai.PermissionDeniedError:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        await call
    return caught.value


async def test_requests_outside_the_policy_are_refused_before_upstream(
    gateway: Any, fake_upstream: FakeUpstream
) -> None:
    await admin(
        gateway,
        "POST",
        "/admin/teams",
        name="t",
        allowed_qualities=["low", "medium"],
        max_pixels=1024 * 1024,
    )
    key = await admin(
        gateway,
        "POST",
        "/admin/keys",
        team="t",
        allowed_models=["gpt-image-1-mini", "gpt-image-1.5", "gpt-5"],
        max_n=2,
    )
    sdk = sdk_for(gateway, key["key"])
    cases = [
        (
            sdk.images.generate(model="gpt-image-2", prompt="a", quality="low", size="1024x1024"),
            "model_not_allowed",
            "model",
        ),
        (
            sdk.images.generate(
                model="gpt-image-1-mini", prompt="a", quality="low", n=3, size="1024x1024"
            ),
            "parameter_not_allowed",
            "n",
        ),
        (
            sdk.images.generate(
                model="gpt-image-1-mini", prompt="a", quality="high", size="1024x1024"
            ),
            "parameter_not_allowed",
            "quality",
        ),
        (
            sdk.images.generate(
                model="gpt-image-1-mini", prompt="a", quality="low", size="1536x1024"
            ),
            "parameter_not_allowed",
            "size",
        ),
        (
            sdk.images.generate(model="gpt-image-1-mini", prompt="a", quality="low"),
            "parameter_not_allowed",
            "size",
        ),  # unset: counted as 1536x1024
        (
            sdk.responses.create(model="gpt-5", input="a", tools=[OTHER_TOOL]),
            "model_not_allowed",
            "tools",
        ),
        (
            sdk.responses.create(model="gpt-4.1", input="a", tools=[TOOL]),
            "model_not_allowed",
            "model",
        ),
    ]
    for call, code, param in cases:
        error = await refused(call)
        assert (error.code, error.param) == (code, param), error.message
        assert error.type == "permission_denied"
    assert fake_upstream.requests == []
    store: Any = gateway.app[SERVICES].store
    outcomes = await store._all("SELECT DISTINCT outcome, cost_nanos FROM ledger", {})
    assert [tuple(row) for row in outcomes] == [("refused_policy", 0)]

    answer = await sdk.images.generate(
        model="gpt-image-1-mini", prompt="a", quality="low", size="1024x1024", n=2
    )
    assert answer.data is not None and len(answer.data) == 2
    await sdk.close()


async def test_the_policy_is_shown_to_its_holder_and_patched_field_by_field(gateway: Any) -> None:
    await admin(gateway, "POST", "/admin/teams", name="t")
    key = await admin(
        gateway, "POST", "/admin/keys", team="t", allowed_models=["gpt-image-2"], max_n=1
    )
    assert key["policy"] == {"allowed_models": ["gpt-image-2"], "max_n": 1}
    patched = await admin(
        gateway, "PATCH", f"/admin/keys/{key['id']}", max_n=None, max_partial_images=0
    )
    assert patched["policy"] == {"allowed_models": ["gpt-image-2"], "max_partial_images": 0}
    own = await gateway.get("/v1/gateway/key", headers={"Authorization": f"Bearer {key['key']}"})
    standing = await own.json()
    assert standing["key"]["policy"] == patched["policy"] and standing["team"]["policy"] == {}
    sdk = sdk_for(gateway, key["key"])
    stream = sdk.images.generate(
        model="gpt-image-2", prompt="a", size="1024x1024", stream=True, partial_images=1
    )
    assert (await refused(stream)).param == "partial_images"
    await sdk.close()


async def test_batch_lines_outside_the_policy_are_refused_by_line(
    gateway: Any, fake_upstream: FakeUpstream
) -> None:
    import io
    import json

    await admin(gateway, "POST", "/admin/teams", name="t", allowed_qualities=["low"])
    key = await admin(gateway, "POST", "/admin/keys", team="t")
    sdk = sdk_for(gateway, key["key"])
    lines = [
        {
            "custom_id": str(i),
            "method": "POST",
            "url": "/v1/images/generations",
            "body": {"model": "gpt-image-1-mini", "prompt": "a", "quality": quality},
        }
        for i, quality in enumerate(("low", "high"))
    ]
    data = io.BytesIO(b"".join(json.dumps(line).encode() + b"\n" for line in lines))
    error = await refused(sdk.files.create(file=("in.jsonl", data), purpose="batch"))
    assert (error.code, error.param) == ("parameter_not_allowed", "line 2")
    assert fake_upstream.requests == []
    await sdk.close()
