"""The single-pass body reader: spooling, multipart summary, limits, and cleanup."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.edge.body import SpooledBody, read_body
from gateway.errors import GatewayError

PNG_HEAD = (
    b"\x89PNG\r\n\x1a\n"
    + b"\x00\x00\x00\rIHDR"
    + (640).to_bytes(4, "big")
    + (480).to_bytes(4, "big")
)


def make_app(spool_dir: Path, seen: list[SpooledBody], limit: int = 10_000_000) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        try:
            body = await read_body(request, limit=limit, spool_threshold=1024, spool_dir=spool_dir)
        except GatewayError as exc:
            return exc.response()
        seen.append(body)
        spooled_files = sorted(p.name for p in spool_dir.glob("body-*"))
        await body.aclose()
        return web.json_response(
            {
                "size": body.size,
                "spooled": spooled_files,
                "fields": body.fields,
                "files": [
                    {
                        "field": f.field,
                        "filename": f.filename,
                        "content_type": f.content_type,
                        "size": f.size,
                        "sha256": f.sha256,
                        "head": len(f.head),
                    }
                    for f in body.files
                ],
                "json": body.json,
            }
        )

    app = web.Application()
    app.router.add_post("/", handler)
    return app


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


async def test_small_json_stays_in_memory_and_is_parsed(
    aiohttp_client: Any, spool_dir: Path
) -> None:
    seen: list[SpooledBody] = []
    client = await aiohttp_client(make_app(spool_dir, seen))
    response = await client.post("/", json={"prompt": "otter", "n": 2})
    data = await response.json()
    assert data["json"] == {"prompt": "otter", "n": 2}
    assert data["spooled"] == []
    assert seen[0].payload() == b'{"prompt": "otter", "n": 2}'


async def test_multipart_is_summarised_and_spooled_past_the_threshold(
    aiohttp_client: Any, spool_dir: Path
) -> None:
    seen: list[SpooledBody] = []
    client = await aiohttp_client(make_app(spool_dir, seen))
    first = PNG_HEAD + os.urandom(200_000)
    second = PNG_HEAD + os.urandom(3_000)
    form = aiohttp.FormData()
    form.add_field("prompt", "put them in a basket")
    form.add_field("image[]", first, filename="a.png", content_type="image/png")
    form.add_field("image[]", second, filename="b.png", content_type="image/png")
    form.add_field("stream", "true")
    response = await client.post("/", data=form)
    data = await response.json()
    assert response.status == 200, data
    assert len(data["spooled"]) == 1  # it was on disk while the handler ran
    assert list(spool_dir.glob("body-*")) == []  # and is gone after aclose()
    assert data["fields"] == [["prompt", "put them in a basket"], ["stream", "true"]]
    assert [(f["field"], f["filename"], f["size"]) for f in data["files"]] == [
        ("image[]", "a.png", len(first)),
        ("image[]", "b.png", len(second)),
    ]
    assert data["files"][0]["sha256"] == hashlib.sha256(first).hexdigest()
    assert data["files"][1]["sha256"] == hashlib.sha256(second).hexdigest()
    assert data["files"][0]["head"] == 64 * 1024
    assert seen[0].files[1].head == second


async def test_spooled_payload_is_the_exact_bytes_received(
    aiohttp_client: Any, spool_dir: Path
) -> None:
    received: list[bytes] = []

    async def handler(request: web.Request) -> web.Response:
        body = await read_body(request, limit=10**7, spool_threshold=1000, spool_dir=spool_dir)
        try:
            payload = body.payload()
            assert not isinstance(payload, bytes)
            received.append(b"".join([chunk async for chunk in payload]))
        finally:
            await body.aclose()
        return web.Response()

    app = web.Application()
    app.router.add_post("/", handler)
    client = await aiohttp_client(app)
    raw = os.urandom(700_000)
    await client.post("/", data=raw, headers={"Content-Type": "application/octet-stream"})
    assert received == [raw]


async def test_over_the_limit_is_413_and_leaves_no_file(
    aiohttp_client: Any, spool_dir: Path
) -> None:
    client = await aiohttp_client(make_app(spool_dir, [], limit=50_000))

    async def chunks() -> Any:  # no Content-Length: the limit must hold while streaming
        for _ in range(20):
            yield os.urandom(10_000)

    response = await client.post(
        "/", data=chunks(), headers={"Content-Type": "application/octet-stream"}
    )
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "request_too_large"
    assert list(spool_dir.glob("body-*")) == []


async def test_declared_length_over_the_limit_is_refused_before_reading(
    aiohttp_client: Any, spool_dir: Path
) -> None:
    client = await aiohttp_client(make_app(spool_dir, [], limit=100))
    response = await client.post("/", data=b"x" * 101, headers={"Content-Type": "text/plain"})
    assert response.status == 413


@pytest.mark.parametrize(
    ("content_type", "body", "code"),
    [
        ("application/json", b'{"prompt": ', "invalid_json"),
        ("multipart/form-data", b"--x\r\n", "invalid_multipart"),  # no boundary parameter
        (
            "multipart/form-data; boundary=xyz",
            b'--xyz\r\nContent-Disposition: form-data; name="a"\r\n\r\nv',
            "invalid_multipart",
        ),
    ],
)
async def test_malformed_bodies_are_400(
    aiohttp_client: Any, spool_dir: Path, content_type: str, body: bytes, code: str
) -> None:
    client = await aiohttp_client(make_app(spool_dir, []))
    response = await client.post("/", data=body, headers={"Content-Type": content_type})
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == code and error["type"] == "invalid_request_error"
