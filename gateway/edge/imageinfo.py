"""Image format and pixel dimensions from the first bytes of a file, without decoding it.

Pure functions over `bytes`, standard library only (no PIL), so the gateway can call them on the
hot path for cost estimates. Supported: PNG, JPEG (baseline, progressive, lossless; the SOF
markers are walked past APP/EXIF segments), WebP (VP8, VP8L, VP8X) and GIF.

Every function returns None rather than raising when the format is unknown or the header is
truncated or malformed. Dimensions are as stored in the file: a JPEG's EXIF orientation is not
applied, and a GIF reports its logical screen size.
"""

from __future__ import annotations

import struct

__all__ = ["image_dimensions", "image_format"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Start-of-frame markers carry the frame size. C4 (DHT), C8 (JPG extension) and CC (DAC) sit in
# the same range but are not frames.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone, without a length field: TEM, RST0-7, SOI.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8), 0xD8})
_JPEG_SOS = 0xDA
_JPEG_EOI = 0xD9


def image_format(head: bytes) -> str | None:
    """Return "png", "jpeg", "webp" or "gif" from the magic bytes of `head`, else None."""
    if head.startswith(_PNG_SIGNATURE):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    return None


def image_dimensions(head: bytes) -> tuple[int, int] | None:
    """Return (width, height) read from the header in `head`, or None.

    None when the format is not one of those supported, when `head` stops before the size is
    known, or when the header is inconsistent (for example a zero width). `head` may be the whole
    file or any prefix of it; a few dozen bytes suffice except for JPEG, whose size follows the
    APP segments (EXIF thumbnails can push it tens of kilobytes in).
    """
    kind = image_format(head)
    if kind == "png":
        size = _png_size(head)
    elif kind == "jpeg":
        size = _jpeg_size(head)
    elif kind == "webp":
        size = _webp_size(head)
    elif kind == "gif":
        size = _gif_size(head)
    else:
        return None
    if size is None or size[0] <= 0 or size[1] <= 0:
        return None
    return size


def _png_size(head: bytes) -> tuple[int, int] | None:
    # The IHDR chunk must come first: 4-byte length, "IHDR", then width and height big-endian.
    if len(head) < 24 or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def _gif_size(head: bytes) -> tuple[int, int] | None:
    if len(head) < 10:
        return None
    width, height = struct.unpack("<HH", head[6:10])
    return width, height


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 ":
        # Lossy: 8-byte chunk header, 3-byte frame tag, start code 9d 01 2a, then 14-bit sizes
        # (the top two bits of each are a scaling hint, not part of the size).
        if len(head) < 30 or head[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        # Lossless: signature byte 0x2f, then width-1 and height-1 as 14-bit fields, LSB first.
        if len(head) < 25 or head[20] != 0x2F:
            return None
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        # Extended: 4 flag bytes, then canvas width-1 and height-1 as 24-bit little-endian.
        if len(head) < 30:
            return None
        width = int.from_bytes(head[24:27], "little") + 1
        height = int.from_bytes(head[27:30], "little") + 1
        return width, height
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    pos = 2  # after SOI
    end = len(head)
    while pos < end:
        if head[pos] != 0xFF:
            return None  # lost sync: not a marker where one must be
        # Any number of 0xFF fill bytes may precede a marker code.
        while pos < end and head[pos] == 0xFF:
            pos += 1
        if pos >= end:
            return None
        marker = head[pos]
        pos += 1
        if marker == 0x00:
            return None  # a stuffed byte belongs inside scan data, never between segments
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (_JPEG_SOS, _JPEG_EOI):
            return None  # entropy-coded data or the end came before any frame header
        if pos + 2 > end:
            return None
        (length,) = struct.unpack(">H", head[pos : pos + 2])
        if length < 2:
            return None
        if marker in _JPEG_SOF:
            # Segment: length(2) precision(1) height(2) width(2). A zero height means the size
            # is only given later by a DNL marker, which we treat as unknown.
            if length < 7 or pos + 7 > end:
                return None
            height, width = struct.unpack(">HH", head[pos + 3 : pos + 7])
            return width, height
        pos += length
    return None
