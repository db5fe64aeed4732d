"""Images out of cached answers, and small thumbnails of them for the console.

A cached body is an Images API answer: JSON (`data[].b64_json`) or an event stream whose
`*.completed` event carries the final image. Answers with URLs only (`response_format=url`)
have no image to show. Thumbnails are made with Pillow in a thread (decoding is CPU work the
event loop must not do) and kept, by body hash, in a small memory cache.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
from collections import OrderedDict
from dataclasses import dataclass

from PIL import Image

THUMBNAIL_PX = 160
KEPT = 512  # thumbnails kept in memory (a few KB each)


@dataclass(frozen=True)
class CachedImage:
    png: bytes  # the image as upstream sent it (PNG, JPEG or WebP, despite the name)
    size: str | None
    quality: str | None


def first_image(body: bytes, content_type: str) -> CachedImage | None:
    """The first whole image in a cached answer, with the size and quality it reports."""
    documents: list[object] = []
    if content_type.startswith("text/event-stream"):
        for line in body.split(b"\n"):
            if line.startswith(b"data:"):
                try:
                    documents.append(json.loads(line[5:]))
                except ValueError:
                    continue
        documents = [d for d in documents if isinstance(d, dict)
                     and str(d.get("type", "")).endswith(".completed")]  # fmt: skip
    else:
        try:
            answer = json.loads(body)
        except ValueError:
            return None
        if isinstance(answer, dict) and isinstance(answer.get("data"), list):
            documents = [
                {**item, "size": answer.get("size"), "quality": answer.get("quality")}
                for item in answer["data"]
                if isinstance(item, dict)
            ]
    for document in documents:
        assert isinstance(document, dict)
        encoded = document.get("b64_json")
        if not isinstance(encoded, str):
            continue
        try:
            image = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        size, quality = document.get("size"), document.get("quality")
        return CachedImage(
            image,
            size if isinstance(size, str) else None,
            quality if isinstance(quality, str) else None,
        )
    return None


def media_type(image: bytes) -> str:
    if image.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if image[:4] == b"RIFF" and image[8:12] == b"WEBP":
        return "image/webp"
    return "image/png"


class Thumbnails:
    def __init__(self) -> None:
        self._kept: OrderedDict[str, bytes] = OrderedDict()

    def kept(self, sha256: str) -> bytes | None:
        """The thumbnail made before for the body `sha256`, if still kept."""
        if (kept := self._kept.get(sha256)) is not None:
            self._kept.move_to_end(sha256)
        return kept

    async def make(self, sha256: str, image: bytes) -> bytes:
        """A PNG at most THUMBNAIL_PX on a side of `image` (the body `sha256`'s), kept."""
        thumbnail = await asyncio.to_thread(_shrink, image)
        self._kept[sha256] = thumbnail
        while len(self._kept) > KEPT:
            self._kept.popitem(last=False)
        return thumbnail


def _shrink(image: bytes) -> bytes:
    with Image.open(io.BytesIO(image)) as picture:
        picture.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        out = io.BytesIO()
        picture.save(out, format="PNG", optimize=True)
        return out.getvalue()
