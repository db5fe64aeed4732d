"""image_dimensions / image_format on headers built byte by byte. The simulator reads sizes with
a reader of its own (it imports nothing from the gateway): both must give the same answers."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from gateway.edge.imageinfo import image_dimensions, image_format
from simulator import images as simulator_images
from simulator.images import encode_png, render_png

READERS = pytest.mark.parametrize(
    "dimensions",
    [image_dimensions, simulator_images.image_dimensions],
    ids=["gateway", "simulator"],
)


def _jpeg(width: int, height: int, *, sof: int = 0xC0, exif_bytes: int = 0) -> bytes:
    soi = b"\xff\xd8"
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    # An APP1 segment whose payload contains bytes that look like a SOF marker: the walker
    # must skip segments by length, not scan for markers.
    payload = (b"Exif\x00\x00" + b"\xff\xc0\x00\x11\x08\x00\x01\x00\x01" * 8)[: max(exif_bytes, 6)]
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    dht = b"\xff\xc4" + struct.pack(">H", 7) + b"\x00\x12\x34\x56\x78"  # not a frame header
    components = b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    frame = struct.pack(">HBHHB", 8 + len(components), 8, height, width, 3) + components
    sos = b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"
    return soi + app0 + app1 + dht + b"\xff\xff" + bytes([0xFF, sof]) + frame + sos + b"\x00" * 8


def _riff(chunk: bytes, data: bytes) -> bytes:
    body = b"WEBP" + chunk + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _webp_vp8(width: int, height: int) -> bytes:
    # Frame tag (keyframe), start code, then 14-bit sizes whose top two bits are scaling hints.
    data = b"\x30\x01\x00\x9d\x01\x2a" + struct.pack("<HH", width | 0x4000, height | 0x8000)
    return _riff(b"VP8 ", data + b"\x00" * 10)


def _webp_vp8l(width: int, height: int) -> bytes:
    bits = (width - 1) | ((height - 1) << 14) | (1 << 28)  # alpha hint set, version 0
    return _riff(b"VP8L", b"\x2f" + bits.to_bytes(4, "little") + b"\x00" * 8)


def _webp_vp8x(width: int, height: int) -> bytes:
    data = (
        b"\x10\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    )
    return _riff(b"VP8X", data)


def _gif(width: int, height: int, version: bytes = b"89a") -> bytes:
    return b"GIF" + version + struct.pack("<HH", width, height) + b"\xf7\x00\x00" + b"\x00" * 6


CASES = [
    ("png", encode_png(3, 5, bytes(3 * 3 * 5), alpha=False), (3, 5)),
    ("png", render_png(bytes(range(32)), 64, transparent=True), (64, 64)),
    ("jpeg", _jpeg(200, 300), (200, 300)),
    ("jpeg", _jpeg(4032, 3024, sof=0xC2, exif_bytes=70), (4032, 3024)),
    ("webp", _webp_vp8(640, 480), (640, 480)),
    ("webp", _webp_vp8l(1000, 750), (1000, 750)),
    ("webp", _webp_vp8x(20000, 3), (20000, 3)),
    ("gif", _gif(320, 200), (320, 200)),
    ("gif", _gif(1, 65535, b"87a"), (1, 65535)),
]


@pytest.mark.parametrize(("kind", "data", "size"), CASES)
@READERS
def test_reads_format_and_size(
    kind: str, data: bytes, size: tuple[int, int], dimensions: Any
) -> None:
    assert image_format(data) == kind
    assert dimensions(data) == size


@pytest.mark.parametrize(("kind", "data", "size"), CASES)
@READERS
def test_every_prefix_is_none_or_the_right_size(
    kind: str, data: bytes, size: tuple[int, int], dimensions: Any
) -> None:
    answers = {dimensions(data[:cut]) for cut in range(len(data))}
    assert answers <= {None, size}
    assert dimensions(data[:9]) is None  # too short for any of the formats


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello world, not an image at all",
        b"BM" + b"\x00" * 60,  # BMP is not supported
        b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDX" + b"\x00" * 12,  # first chunk not IHDR
        encode_png(2, 2, bytes(12), alpha=False)[:16] + b"\x00\x00\x00\x00\x00\x00\x00\x02",
        b"\xff\xd8\xff\xda\x00\x08" + b"\x00" * 20,  # scan before any frame header
        b"\xff\xd8\xff\xe0\x00\x01" + b"\x00" * 20,  # segment length below 2
        b"\xff\xd8\x00\x00\x00\x00",  # lost marker sync
        _jpeg(100, 0),  # height deferred to a DNL marker
        _riff(b"VP8 ", b"\x30\x01\x00\x00\x00\x00" + b"\x00" * 14),  # bad VP8 start code
        _riff(b"VP8L", b"\x00" + b"\x00" * 12),  # bad VP8L signature
        _riff(b"ALPH", b"\x00" * 20),
        b"GIF88a\x10\x00\x10\x00",
    ],
)
@READERS
def test_garbage_and_malformed_headers_are_none(data: bytes, dimensions: Any) -> None:
    assert dimensions(data) is None


def test_format_without_size() -> None:
    assert image_format(b"\xff\xd8\xff") == "jpeg"
    assert image_dimensions(b"\xff\xd8\xff") is None
    assert image_format(b"RIFF\x00\x00\x00\x00WAVE") is None
