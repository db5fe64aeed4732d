"""What a request may cost, before it runs: an upper bound of its charge in the usual case, for
budget checks and reservations (see `estimate`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from gateway.pricing.charge import per_image_cost_nanos, usage_cost_nanos
from gateway.pricing.table import ModelPrice, parse_size
from gateway.pricing.usage import PARTIAL_IMAGE_TOKENS, Usage

# The input-image tile model (the simulator's, after the public vision guide): fit within
# 2048x2048, shrink so the shortest side is 512 (never enlarge), count 512-pixel tiles.
_MAX_SIDE = 2048
_TILE = 512
_IMAGE_BASE_TOKENS = 65
_IMAGE_TILE_TOKENS = 129
# After fitting, the longest side is at most 2048 (at most 4 tiles across) and the shortest at
# most 512 (one tile): no image costs more than 4 tiles, whatever its size.
_MAX_TILES = _MAX_SIDE // _TILE
_UNKNOWN_IMAGE_TOKENS = _IMAGE_BASE_TOKENS + _IMAGE_TILE_TOKENS * _MAX_TILES
_HIGH_FIDELITY_TOKENS = 4160
_HIGH_FIDELITY_MAX_IMAGES = 5
# GIF output: the API's default frame count, and the most it accepts.
_DEFAULT_GIF_FRAMES = 9
MAX_GIF_FRAMES = 16


@dataclass(frozen=True)
class EstimateRequest:
    """What `estimate` needs to know of a request.

    `endpoint` is "generations", "edits" or "variations". `input_images` holds one entry per
    input image (not the mask): its (width, height) from the file header, or None if unknown.
    `size`, `quality`, `output_format` and `complexity` are as the client sent them (None when
    absent); `frame_count` is None when absent.
    """

    model: str
    endpoint: str = "generations"
    size: str | None = None
    quality: str | None = None
    n: int = 1
    partial_images: int = 0
    stream: bool = False
    prompt: str = ""
    input_images: Sequence[tuple[int, int] | None] = ()
    input_fidelity: str | None = None
    output_format: str | None = None
    frame_count: int | None = None
    complexity: str | None = None


@dataclass(frozen=True)
class Estimate:
    """An estimated cost in nano-dollars and the token counts it assumed (zero when per-image).

    `svg_nanos` is the part of `nanos` for authoring an SVG (0 when none is asked for)."""

    nanos: int
    usage: Usage
    svg_nanos: int = 0


def estimate(
    price: ModelPrice, request: EstimateRequest, svg_author: ModelPrice | None = None
) -> Estimate:
    """Estimate the cost of `request` before it runs: an upper bound of its charge, usually.

    Per-image models: `per_image_cost_nanos(size, quality, n)`, with an all-zero usage.

    Token-billed models count, then price with `usage_cost_nanos`:

    * output, per image: the `output_tokens` entry for quality and size. A quality that is
      None or "auto" takes the dearest of the rows auto can pick (low, medium, high), one not
      in the table the most expensive row; a size that is None, "auto" or not "WxH" the most
      expensive size of the row (the row lists the sizes auto can pick); a "WxH" outside the
      row the row's highest tokens-per-pixel scaled to that area, rounded up (any size up to
      3840x2160 is bounded so). Streaming adds 100 per partial image per image. GIF output
      (`output_format` "gif") renders `frame_count` frames (9 when absent, at most 16), each
      an image. The total is n times that.
    * text output, per image: the model's `complexity_tokens` for the request's complexity (the
      largest entry when it is absent or unknown); zero for a model without that table.
    * text input: the prompt's length in UTF-8 bytes. A token covers at least one byte, so this
      bounds any byte-level tokenizer's count (and len(prompt), and the ceil(len/4) rule).
    * image input, per image: 65 + 129 per 512-pixel tile after fitting within 2048x2048 and
      shrinking the shortest side to 512. An unknown size counts as the worst case, 4 tiles
      (581 tokens; a 2048x2048 image is only 1 tile). An edit with no images listed counts one
      unknown image, since an edit has at least one. `input_fidelity` "high" adds 4160 for each
      of the first 5 images (gpt-image-1.5 preserves up to 5 at high fidelity; others 1); so
      does a model that reads input at high fidelity always (`always_high_fidelity`).
    * SVG output (`output_format` "svg"): `svg_author`, a text model, reads the prompt and the
      reference image (at most the image's output tokens) and writes at most its
      `max_output_tokens`; that part is `svg_nanos`.
    * nothing is assumed cached: cached tokens only lower a charge.

    "Usually" means: the upstream counts tokens as above (the public guide's table and the
    simulator's model), the request's images are the ones listed, and the table's caps (rows for
    unpublished qualities, complexity tokens) are at least what upstream spends.
    Raises ValueError for a negative `n` or `partial_images`, a token-billed model without an
    output-token table, or SVG output without a priced text model to author it.
    """
    if request.n < 0 or request.partial_images < 0:
        raise ValueError("n and partial_images must be >= 0")
    if price.per_image_billing:
        nanos = per_image_cost_nanos(price, request.size, request.quality, request.n)
        return Estimate(nanos, Usage(0, 0, 0, 0, 0, 0))
    if not price.output_tokens:
        raise ValueError(f"model {price.name!r} has no output-token table")
    per_image = _output_tokens(price.output_tokens, request.size, request.quality)
    if request.stream:
        per_image += PARTIAL_IMAGE_TOKENS * request.partial_images
    if request.output_format == "gif":
        frames = _DEFAULT_GIF_FRAMES if request.frame_count is None else request.frame_count
        per_image *= max(1, min(frames, MAX_GIF_FRAMES))
    images: list[tuple[int, int] | None] = list(request.input_images)
    if not images and request.endpoint == "edits":
        images = [None]
    image_tokens = sum(_input_image_tokens(dims) for dims in images)
    if images and (request.input_fidelity == "high" or price.always_high_fidelity):
        image_tokens += _HIGH_FIDELITY_TOKENS * min(len(images), _HIGH_FIDELITY_MAX_IMAGES)
    prompt_tokens = len(request.prompt.encode("utf-8", "surrogatepass"))
    usage = Usage(
        text_input=prompt_tokens,
        cached_text_input=0,
        image_input=image_tokens,
        cached_image_input=0,
        image_output=request.n * per_image,
        text_output=request.n * _complexity_tokens(price, request.complexity),
    )
    nanos = usage_cost_nanos(price, usage)
    svg_nanos = 0
    if request.output_format == "svg":
        if svg_author is None or svg_author.max_output_tokens is None:
            raise ValueError("SVG output needs a priced text model to author it")
        reading = Usage(prompt_tokens + per_image, 0, 0, 0, 0, svg_author.max_output_tokens)
        svg_nanos = request.n * usage_cost_nanos(svg_author, reading)
    return Estimate(nanos + svg_nanos, usage, svg_nanos)


def _complexity_tokens(price: ModelPrice, complexity: str | None) -> int:
    table = price.complexity_tokens
    if not table:
        return 0
    if complexity is not None and complexity in table:
        return table[complexity]
    return max(table.values())


# What `quality: auto` (or none) can turn into: the API picks among these, never the dearer
# qualities (xhigh, max) that must be asked for by name.
AUTO_QUALITIES = ("low", "medium", "high")


def _output_tokens(
    table: Mapping[str, Mapping[str, int]], size: str | None, quality: str | None
) -> int:
    if quality is not None and quality in table:
        rows = [table[quality]]
    elif quality in (None, "auto") and any(q in table for q in AUTO_QUALITIES):
        rows = [table[q] for q in AUTO_QUALITIES if q in table]
    else:  # a quality the table does not know: its dearest row
        rows = list(table.values())
    dims = None if size is None else parse_size(size)
    best = 0
    for row in rows:
        if dims is None:
            best = max(best, *row.values())
            continue
        width, height = dims
        exact = row.get(f"{width}x{height}")
        if exact is not None:
            best = max(best, exact)
            continue
        for key, tokens in row.items():
            entry = parse_size(key)
            assert entry is not None  # load_prices checked every key
            # ceil(tokens × area / entry area) in integers: no float rounding.
            scaled = -(-tokens * width * height // (entry[0] * entry[1]))
            best = max(best, scaled)
    return best


def image_input_tokens(width: int, height: int) -> int:
    """Tokens for one input image under the tile model: scale to fit 2048x2048, then the shortest
    side to 512 (never up), and count 65 + 129 per 512-pixel tile (exact rational scaling).
    The built-in simulator charges input images by this same model."""
    w, h = Fraction(width), Fraction(height)
    longest = max(w, h)
    if longest > _MAX_SIDE:
        w, h = w * _MAX_SIDE / longest, h * _MAX_SIDE / longest
    shortest = min(w, h)
    if shortest > _TILE:
        w, h = w * _TILE / shortest, h * _TILE / shortest
    tiles = math.ceil(w / _TILE) * math.ceil(h / _TILE)
    return _IMAGE_BASE_TOKENS + _IMAGE_TILE_TOKENS * tiles


def _input_image_tokens(dims: tuple[int, int] | None) -> int:
    if dims is None or dims[0] <= 0 or dims[1] <= 0:
        return _UNKNOWN_IMAGE_TOKENS
    return image_input_tokens(*dims)
