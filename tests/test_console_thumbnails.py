"""Images found in cached answers, JSON or event streams, and their thumbnails
(gateway/console/thumbnails.py)."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image, UnidentifiedImageError

from gateway.console.thumbnails import THUMBNAIL_PX, Thumbnails, first_image, media_type


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(out, format="PNG")
    return out.getvalue()


def test_the_first_image_of_a_json_answer_with_its_size_and_quality() -> None:
    image = png(8, 8)
    encoded = base64.b64encode(image).decode()
    body = json.dumps({"created": 1, "size": "1024x1024", "quality": "low",
                       "data": [{"b64_json": encoded}]}).encode()  # fmt: skip
    found = first_image(body, "application/json")
    assert found is not None
    assert (found.png, found.size, found.quality) == (image, "1024x1024", "low")


def test_the_completed_image_of_a_stream_not_its_partials() -> None:
    partial, final = png(4, 4), png(8, 8)
    events = [
        {"type": "image_generation.partial_image", "b64_json": base64.b64encode(partial).decode()},
        {"type": "image_generation.completed", "b64_json": base64.b64encode(final).decode(),
         "size": "1536x1024", "quality": "high"},
    ]  # fmt: skip
    body = b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)
    found = first_image(body, "text/event-stream")
    assert found is not None and found.png == final and found.size == "1536x1024"


def test_answers_without_an_image_have_none() -> None:
    urls = json.dumps({"data": [{"url": "https://example.com/x.png"}]}).encode()
    assert first_image(urls, "application/json") is None
    assert first_image(b"not json", "application/json") is None
    broken = json.dumps({"data": [{"b64_json": "!!!"}]}).encode()
    assert first_image(broken, "application/json") is None


def test_media_types_by_signature() -> None:
    assert media_type(png(2, 2)) == "image/png"
    assert media_type(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert media_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"


async def test_a_thumbnail_is_small_and_made_once() -> None:
    thumbnails = Thumbnails()
    assert thumbnails.kept("sha") is None
    made = await thumbnails.make("sha", png(1024, 512))
    with Image.open(io.BytesIO(made)) as picture:
        assert picture.size == (THUMBNAIL_PX, THUMBNAIL_PX // 2)
    assert thumbnails.kept("sha") is made  # kept: the page does not read the body again


async def test_what_is_not_an_image_makes_no_thumbnail() -> None:
    thumbnails = Thumbnails()
    with pytest.raises(UnidentifiedImageError):
        await thumbnails.make("bad", b"not even an image")
    assert thumbnails.kept("bad") is None
