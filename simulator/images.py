"""Images for the simulator: small, real, deterministic PNGs to answer with, and the pixel size of
the images an edit sends (standard library zlib + struct only).

`render_png(digest, size)` draws a picture that depends only on its arguments: a colour gradient
in one of four directions, crossed by stripes, with colours, direction and stripe width taken
from the digest. Different digests give visibly different pictures; the same digest always gives
the same bytes (zlib's output is deterministic for a given level).
"""

from __future__ import annotations

import math
import struct
import zlib

__all__ = ["PNG_SIGNATURE", "encode_png", "image_dimensions", "render_png"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TRANSPARENT_PIXEL = b"\x00\x00\x00\x00"


def encode_png(width: int, height: int, pixels: bytes, *, alpha: bool) -> bytes:
    """Encode 8-bit RGB (or RGBA when `alpha`) pixels, rows top to bottom, as a PNG file.

    Raises ValueError when `pixels` does not hold exactly width × height pixels.
    """
    bpp = 4 if alpha else 3
    stride = width * bpp
    if width <= 0 or height <= 0 or len(pixels) != stride * height:
        raise ValueError(f"expected {stride * height} bytes of pixels, got {len(pixels)}")
    # Filter type 0 (None) on every row: the images are tiny, so smarter filters buy nothing.
    raw = b"".join(b"\x00" + pixels[y * stride : (y + 1) * stride] for y in range(height))
    colour_type = 6 if alpha else 2
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"".join(
        (
            PNG_SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(raw, 6)),
            _chunk(b"IEND", b""),
        )
    )


def render_png(digest: bytes, size: int, *, block: int = 1, transparent: bool = False) -> bytes:
    """Return a `size` × `size` PNG determined by `digest` (at least 12 bytes).

    `block` > 1 pixelates the picture into block × block squares (used for partial images, which
    thereby look like coarse previews of the final one). `transparent` gives an RGBA image whose
    corners are fully transparent around an opaque disc.
    """
    if len(digest) < 12:
        raise ValueError("digest must hold at least 12 bytes")
    if size <= 0:
        raise ValueError("size must be positive")
    bpp = 4 if transparent else 3
    rows = _pattern_rows(digest, size, transparent)
    if transparent:
        rows = [_cut_disc(row, y, size) for y, row in enumerate(rows)]
    if block > 1:
        rows = _pixelate(rows, size, block, bpp)
    return encode_png(size, size, b"".join(rows), alpha=transparent)


def _pattern_rows(digest: bytes, size: int, alpha: bool) -> list[bytes]:
    first, second, stripe = digest[0:3], digest[3:6], digest[6:9]
    direction = digest[9] % 4
    # Stripe width scales with the image so that the pattern looks alike at every image_px.
    period = max(1, size * (2 + digest[10] % 7) // 64)
    # The picture is constant along one direction, so it is built from one line of colours:
    # rows are the line itself (horizontal), one colour each (vertical) or sliding windows of a
    # line twice as long (the two diagonals). This keeps rendering linear in the side length.
    length = size if direction < 2 else 2 * size - 1
    line = [_colour(i, length, first, second, stripe, period, alpha) for i in range(length)]
    if direction == 0:
        row = b"".join(line)
        return [row] * size
    if direction == 1:
        return [line[y] * size for y in range(size)]
    joined = b"".join(line)
    bpp = 4 if alpha else 3
    if direction == 2:
        return [joined[y * bpp : (y + size) * bpp] for y in range(size)]
    return [joined[(size - 1 - y) * bpp : (2 * size - 1 - y) * bpp] for y in range(size)]


def _colour(
    i: int, length: int, first: bytes, second: bytes, stripe: bytes, period: int, alpha: bool
) -> bytes:
    span = max(1, length - 1)
    channels = [(a * (span - i) + b * i) // span for a, b in zip(first, second, strict=True)]
    if (i // period) % 2:
        channels = [(c + s) // 2 for c, s in zip(channels, stripe, strict=True)]
    if alpha:
        channels.append(255)
    return bytes(channels)


def _cut_disc(row: bytes, y: int, size: int) -> bytes:
    centre = size / 2
    radius = size * 0.45
    dy = y + 0.5 - centre
    if abs(dy) >= radius:
        return _TRANSPARENT_PIXEL * size
    half = math.sqrt(radius * radius - dy * dy)
    x0 = max(0, round(centre - half))
    x1 = min(size, round(centre + half))
    return _TRANSPARENT_PIXEL * x0 + row[x0 * 4 : x1 * 4] + _TRANSPARENT_PIXEL * (size - x1)


def _pixelate(rows: list[bytes], size: int, block: int, bpp: int) -> list[bytes]:
    def coarse(row: bytes) -> bytes:
        return b"".join(
            row[x * bpp : (x + 1) * bpp] * min(block, size - x) for x in range(0, size, block)
        )

    coarse_rows = [coarse(rows[y]) for y in range(0, size, block)]
    return [coarse_rows[y // block] for y in range(size)]


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def image_dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from the header of a PNG, GIF, WebP or JPEG file; None when the
    bytes are none of those, are cut short before the size, or say a side is 0."""
    size = _header_size(data)
    return None if size is None or 0 in size else size


def _header_size(data: bytes) -> tuple[int, int] | None:
    try:
        if data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
            return width, height
        if data[:6] in (b"GIF87a", b"GIF89a"):
            width, height = struct.unpack("<HH", data[6:10])
            return width, height
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_size(data)
        if data[:2] == b"\xff\xd8":
            return _jpeg_size(data)
    except struct.error:  # cut short
        return None
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":  # lossy: a key frame's start code, then 14-bit sizes
        if data[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":  # lossless: a signature byte, then 14-bit sizes minus one, packed
        if data[20:21] != b"\x2f":
            return None
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: 24-bit canvas sizes minus one
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return (width, height) if len(data) >= 30 else None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walk the segments to the first start-of-frame marker (SOF0-SOF15 but DHT, JPG, DAC)."""
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length field
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if length < 2:  # the length counts its own two bytes
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return width, height
        if marker in (0xD9, 0xDA):  # the image data or its end, and no frame yet
            return None
        at += 2 + length
    return None
