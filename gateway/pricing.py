"""Model prices, and what a request costs, exact to the nano-dollar.

The price file (setting `GATEWAY_PRICES`; shipped in the package as `gateway/config/prices.toml`)
is read by `load_prices` into a `PriceTable`; every figure is validated there, so the rest of the
gateway can trust it. Two kinds of model exist:

* token-billed (GPT image models): USD per 1M tokens for each kind of token, and an
  output-token table (quality -> size -> tokens per image) used only for estimates;
* per-image (DALL·E): USD per image by size, or by quality and size.

Money never passes through `float`: rates are `Decimal`, costs are integer nano-dollars
(`gateway.money.NANOS_PER_USD` per USD), summed exactly and rounded once, half up.

`usage_cost_nanos` prices a response's `usage` (read by `Usage.from_api`): that is the charge.
`estimate` prices a request before it runs, for budget checks and reservations: in the usual case
it is an upper bound of the charge (see its docstring for what "usual" covers).
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import date
from decimal import (
    MAX_EMAX,
    MAX_PREC,
    MIN_EMIN,
    ROUND_HALF_UP,
    Context,
    Decimal,
    InvalidOperation,
    Overflow,
    localcontext,
)
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gateway.money import NANOS_PER_USD

__all__ = [
    "Estimate",
    "EstimateRequest",
    "ModelPrice",
    "PriceError",
    "PriceTable",
    "Usage",
    "describe",
    "estimate",
    "load_prices",
    "per_image_cost_nanos",
    "usage_cost_nanos",
]

# Token rates are USD per 1M tokens: tokens × rate × 1000 is nano-dollars.
_TOKENS_PER_RATE = 1_000_000
_NANOS_PER_RATE_UNIT = NANOS_PER_USD // _TOKENS_PER_RATE

# Exact decimal arithmetic: with the largest precision and exponent range, + and × of finite
# decimals never round; only the final quantize does.
_EXACT = Context(
    prec=MAX_PREC,
    Emax=MAX_EMAX,
    Emin=MIN_EMIN,
    rounding=ROUND_HALF_UP,
    traps=[InvalidOperation, Overflow],
)

_TOKEN_RATES = (
    "text_input",
    "cached_text_input",
    "image_input",
    "cached_image_input",
    "image_output",
    "text_output",
)
_REQUIRED_TOKEN_RATES = ("text_input", "image_input", "image_output")
_MODEL_KEYS = frozenset(
    {
        "source",
        *_TOKEN_RATES,
        "per_image",
        "output_tokens",
        "complexity_tokens",
        "max_output_tokens",
    }
)
# A text model (one that authors SVG for an image model) has these rates and an output cap.
_TEXT_MODEL_RATES = ("text_input", "text_output")
_TOP_KEYS = frozenset({"version", "models", "aliases", "default_output_tokens"})

# A usage kind with no rate of its own is charged at the next rate in its chain.
_RATE_CHAINS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "text_input": ("text_input",),
        "cached_text_input": ("cached_text_input", "text_input"),
        "image_input": ("image_input",),
        "cached_image_input": ("cached_image_input", "image_input"),
        "image_output": ("image_output",),
        "text_output": ("text_output", "image_output"),
    }
)

_SIZE_RE = re.compile(r"^([1-9][0-9]*)x([1-9][0-9]*)$")
_SNAPSHOT_RE = re.compile(r"^(.+)-[0-9]{4}-[0-9]{2}-[0-9]{2}$")

# Per-image models: the API's defaults when a request names no quality or size.
_PER_IMAGE_DEFAULT_QUALITY = "standard"
_PER_IMAGE_DEFAULT_SIZE = "1024x1024"

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
_PARTIAL_IMAGE_TOKENS = 100
# GIF output: the API's default frame count, and the most it accepts.
_DEFAULT_GIF_FRAMES = 9
MAX_GIF_FRAMES = 16


class PriceError(Exception):
    """A price file that cannot be used. The message names the file and the problem."""


@dataclass(frozen=True)
class ModelPrice:
    """One model's prices, as validated by `load_prices`.

    Token rates are USD per 1M tokens (None: the model has no such rate). A per-image model has a
    non-empty `per_image` ("WxH" or "quality:WxH" -> USD per image) and no token rates; a
    token-billed model has `text_input`, `image_input`, `image_output` and a non-empty
    `output_tokens` (quality -> "WxH" -> output tokens per image).
    """

    name: str
    source: str
    text_input: Decimal | None
    cached_text_input: Decimal | None
    image_input: Decimal | None
    cached_image_input: Decimal | None
    image_output: Decimal | None
    text_output: Decimal | None
    per_image: Mapping[str, Decimal]
    output_tokens: Mapping[str, Mapping[str, int]]
    # complexity -> text output tokens per image, an upper bound of the planning `complexity`
    # adds (empty: the model has no such parameter, or it adds nothing).
    complexity_tokens: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    # Text models only: the most output tokens one answer can have (bounds an SVG's cost).
    max_output_tokens: int | None = None

    @property
    def per_image_billing(self) -> bool:
        """True when the model is charged per image rather than per token."""
        return bool(self.per_image)

    @property
    def text_only(self) -> bool:
        """A text model: it prices SVG authoring (`svg_usage`), never an image request."""
        return not self.per_image and self.image_output is None


@dataclass(frozen=True)
class PriceTable:
    """A loaded price file: its `version` (effective date), `path`, models and aliases.

    Every alias names a key of `models`, and no alias is also a model name.
    """

    version: str
    path: str
    models: Mapping[str, ModelPrice]
    aliases: Mapping[str, str]

    def lookup(self, model: str) -> ModelPrice | None:
        """The price of `model`: by exact name, then alias, then as a dated snapshot.

        A snapshot `NAME-YYYY-MM-DD` resolves to NAME (itself looked up by name or alias). None
        when the model is not priced. Names are case-sensitive, as the API's are.
        """
        found = self._direct(model)
        if found is None:
            match = _SNAPSHOT_RE.match(model)
            if match is not None:
                found = self._direct(match.group(1))
        return found

    def dearest_text_model(self) -> ModelPrice | None:
        """The text model with the dearest text output (then input): the upper bound for an SVG
        whose author the request does not name."""
        texts = [price for price in self.models.values() if price.text_only]
        return max(texts, key=lambda p: (p.text_output, p.text_input), default=None)

    def dearest_image_model(self) -> ModelPrice | None:
        """The token-billed image model with the dearest image output (then input) rate."""
        images = [p for p in self.models.values() if p.image_output is not None]
        return max(images, key=lambda p: (p.image_output, p.image_input), default=None)

    def _direct(self, model: str) -> ModelPrice | None:
        price = self.models.get(model)
        if price is None and model in self.aliases:
            price = self.models.get(self.aliases[model])
        return price


@dataclass(frozen=True)
class Usage:
    """Token counts of a request, split by how each kind is billed. All are ints >= 0.

    `text_input` and `image_input` exclude the cached tokens counted in `cached_text_input` and
    `cached_image_input`.
    """

    text_input: int
    cached_text_input: int
    image_input: int
    cached_image_input: int
    image_output: int
    text_output: int

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"usage {item.name} must be a whole number >= 0, not {value!r}")

    def plus_output(self, image_tokens: int) -> Usage:
        """This usage with `image_tokens` more image output."""
        return replace(self, image_output=self.image_output + image_tokens)

    @classmethod
    def from_api(cls, usage: Mapping[str, Any]) -> Usage:
        """Read the API's `usage` object (a JSON body's, or a stream's `*.completed` event's).

        Input: `input_tokens_details.text_tokens` / `image_tokens` split `input_tokens`; without
        details every input token counts as text; a detail that is missing is the rest of
        `input_tokens`, and input tokens the details leave out count as text. Cached tokens come
        from `cached_tokens_details.text_tokens` / `image_tokens`, or else from `cached_tokens`,
        taken from text first (the smaller discount at every shipped price) and then image; they
        are billed at the cached rate and subtracted from their kind, and never exceed it.

        Output: `output_tokens_details.image_tokens` / `text_tokens` split `output_tokens`;
        without details ALL output tokens are image output (GPT image models bill output at
        the image rate); output tokens the details leave out count as image output.

        Absent keys and JSON nulls are "not given". Raises ValueError for anything else that is
        not a whole number >= 0, and for details that are not objects.
        """
        if not isinstance(usage, Mapping):
            raise ValueError(f"usage must be an object, not {type(usage).__name__}")
        input_total = _count(usage, "input_tokens", "usage")
        output_total = _count(usage, "output_tokens", "usage")
        in_details = _details(usage, "input_tokens_details", "usage")
        out_details = _details(usage, "output_tokens_details", "usage")

        where = "usage.input_tokens_details"
        text, image = _split(
            input_total,
            _count(in_details, "text_tokens", where),
            _count(in_details, "image_tokens", where),
        )
        cached_details = _details(in_details, "cached_tokens_details", where)
        cached_where = f"{where}.cached_tokens_details"
        cached_text = _count(cached_details, "text_tokens", cached_where)
        cached_image = _count(cached_details, "image_tokens", cached_where)
        if cached_text is None and cached_image is None:
            cached = _count(in_details, "cached_tokens", where) or 0
            cached_text = min(cached, text)
            cached_image = min(cached - cached_text, image)
        cached_text = min(cached_text or 0, text)
        cached_image = min(cached_image or 0, image)

        where = "usage.output_tokens_details"
        out_image, out_text = _split(
            output_total,
            _count(out_details, "image_tokens", where),
            _count(out_details, "text_tokens", where),
        )
        return cls(
            text_input=text - cached_text,
            cached_text_input=cached_text,
            image_input=image - cached_image,
            cached_image_input=cached_image,
            image_output=out_image,
            text_output=out_text,
        )


@dataclass(frozen=True)
class SvgUsage:
    """What authoring an SVG cost (`svg_usage`): its text model and billable tokens.

    `output_tokens` counts reasoning too: the larger of the reported output and total - input.
    """

    model: str
    input_tokens: int
    output_tokens: int

    @classmethod
    def from_api(cls, usage: Mapping[str, Any]) -> SvgUsage:
        """Read the API's `svg_usage` object; raises ValueError when it cannot be billed."""
        if not isinstance(usage, Mapping):
            raise ValueError(f"svg_usage must be an object, not {type(usage).__name__}")
        model = usage.get("model")
        if not isinstance(model, str) or not model:
            raise ValueError("svg_usage.model must name a model")
        given = _count(usage, "input_tokens", "svg_usage")
        output = _count(usage, "output_tokens", "svg_usage")
        total = _count(usage, "total_tokens", "svg_usage")
        reasoning = _count(usage, "reasoning_tokens", "svg_usage")
        if given is None or (output is None and total is None):
            raise ValueError("svg_usage must give input_tokens and output or total tokens")
        billable = max(output or 0, (total or 0) - given)
        if output is not None and total is not None and total < given + output:
            billable += reasoning or 0  # reasoning was reported beside, not inside, the output
        return cls(model, given, billable)

    def as_usage(self) -> Usage:
        return Usage(self.input_tokens, 0, 0, 0, 0, self.output_tokens)


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


def load_prices(path: Path) -> PriceTable:
    """Read and validate a price file; raise PriceError naming the file and the problem.

    Checked: TOML syntax; a non-empty `version` (a string, or a TOML date); known keys only at
    every level; money as non-negative decimal strings or integers (floats are refused, since
    they cannot hold cents exactly); a `source` per model; each model either per-image or
    token-billed with text_input, image_input and image_output; output-token tables of quality
    -> "WxH" -> whole tokens >= 0, with [default_output_tokens] standing in for a token-billed
    model without its own; per-image keys "WxH" or "quality:WxH"; aliases naming a model.
    """
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise PriceError(f"{path}: cannot read the price file: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PriceError(f"{path}: not valid TOML: {exc}") from exc
    return _Loader(str(path)).table(data)


def usage_cost_nanos(price: ModelPrice, usage: Usage) -> int:
    """The cost of `usage` at `price`'s token rates, in nano-dollars.

    The sum over kinds of tokens × USD-per-1M is exact; it is rounded once, half up, to a whole
    nano-dollar. A kind with tokens but no rate of its own is charged at the nearest rate:
    cached text or image input at the uncached rate of its kind, text output at the image output
    rate. Raises ValueError when tokens of a kind have no rate even then (a per-image model given
    token usage, say); an all-zero usage costs 0 at any price.
    """
    total = Decimal(0)
    with localcontext(_EXACT):
        for kind, chain in _RATE_CHAINS.items():
            tokens: int = getattr(usage, kind)
            if tokens == 0:
                continue
            rate = next(
                (r for r in (getattr(price, name) for name in chain) if r is not None), None
            )
            if rate is None:
                raise ValueError(f"model {price.name!r} has no rate for {kind} tokens")
            total += tokens * rate
        return _round_nanos(total * _NANOS_PER_RATE_UNIT)


def per_image_cost_nanos(price: ModelPrice, size: str | None, quality: str | None, n: int) -> int:
    """The cost of `n` images of a per-image model, in nano-dollars.

    The entry is chosen by quality, when the model's prices depend on it, and size:

    * quality None or "auto": "standard" (the API's default) if the model has it; a quality
      the model lists: that one; any other: the most expensive quality for the size;
    * size None: "1024x1024" (the API's default) if listed; a listed size: that one; any other
      size (including "auto"): the most expensive entry, an upper bound;
    * a model whose prices do not depend on quality ignores `quality`;
    * an empty string is taken as not given (an empty form field).

    Raises ValueError if the model is not billed per image or `n` is negative.
    """
    if not price.per_image:
        raise ValueError(f"model {price.name!r} is not billed per image")
    if n < 0:
        raise ValueError(f"n must be >= 0, not {n}")
    size = size or None
    # "auto" lets the API choose, and it chooses its default: auto costs what omitting costs.
    quality = None if quality in (None, "", "auto") else quality
    entries = [(*_per_image_key(key), usd) for key, usd in price.per_image.items()]
    qualities = {q for q, _, _ in entries if q is not None}
    if qualities:
        wanted = quality
        if quality is None and _PER_IMAGE_DEFAULT_QUALITY in qualities:
            wanted = _PER_IMAGE_DEFAULT_QUALITY
        if wanted in qualities:
            entries = [e for e in entries if e[0] == wanted]
    wanted_size = _PER_IMAGE_DEFAULT_SIZE if size is None else size
    sized = [e for e in entries if e[1] == wanted_size]
    each = max(usd for _, _, usd in (sized or entries))
    with localcontext(_EXACT):
        return _round_nanos(each * n * NANOS_PER_USD)


def estimate(
    price: ModelPrice, request: EstimateRequest, svg_author: ModelPrice | None = None
) -> Estimate:
    """Estimate the cost of `request` before it runs: an upper bound of its charge, usually.

    Per-image models: `per_image_cost_nanos(size, quality, n)`, with an all-zero usage.

    Token-billed models count, then price with `usage_cost_nanos`:

    * output, per image: the `output_tokens` entry for quality and size. A quality that is
      None, "auto" or not in the table takes the most expensive row; a size that is None,
      "auto" or not "WxH" the most expensive size of the row; a "WxH" outside the row the row's
      highest tokens-per-pixel scaled to that area, rounded up (any size up to 3840x2160 is
      bounded so). Streaming adds 100 per partial image per image. GIF output
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
      of the first 5 images (gpt-image-1.5 preserves up to 5 at high fidelity; others 1).
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
        per_image += _PARTIAL_IMAGE_TOKENS * request.partial_images
    if request.output_format == "gif":
        frames = _DEFAULT_GIF_FRAMES if request.frame_count is None else request.frame_count
        per_image *= max(1, min(frames, MAX_GIF_FRAMES))
    images: list[tuple[int, int] | None] = list(request.input_images)
    if not images and request.endpoint == "edits":
        images = [None]
    image_tokens = sum(_input_image_tokens(dims) for dims in images)
    if images and request.input_fidelity == "high":
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


def describe(table: PriceTable) -> list[dict[str, str]]:
    """Rows for a CLI table, one per model in file order, every row with the same keys.

    model, billing ("tokens" or "per image"), each token rate as a decimal string in USD per 1M
    tokens ("" when none), per_image ("KEY=USD" pairs, space-separated; "" for token models),
    aliases (the names that resolve to the model, comma-separated) and source.
    """
    rows: list[dict[str, str]] = []
    for name, price in table.models.items():
        billing = "per image" if price.per_image_billing else "tokens"
        row = {"model": name, "billing": "text (SVG author)" if price.text_only else billing}
        for rate in _TOKEN_RATES:
            value: Decimal | None = getattr(price, rate)
            row[rate] = "" if value is None else f"{value:f}"
        row["per_image"] = " ".join(f"{key}={usd:f}" for key, usd in price.per_image.items())
        row["aliases"] = ", ".join(sorted(a for a, base in table.aliases.items() if base == name))
        row["source"] = price.source
        rows.append(row)
    return rows


# --- usage helpers ---------------------------------------------------------------------------


def _count(mapping: Mapping[str, Any], key: str, where: str) -> int | None:
    """A token count: a whole number >= 0, also when written as a float (`1632.0`)."""
    value = mapping.get(key)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where}.{key} must be a whole number >= 0, not {value!r}")
    return value


def _details(mapping: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = mapping.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}.{key} must be an object, not {type(value).__name__}")
    return value


def _split(total: int | None, first: int | None, second: int | None) -> tuple[int, int]:
    """Split `total` into (first, second) kinds; what the details leave out goes to `first`."""
    if first is None and second is None:
        return total or 0, 0
    if second is None:
        assert first is not None
        return first, max((total or 0) - first, 0)
    if first is None:
        return max((total or 0) - second, 0), second
    return first + max((total or 0) - first - second, 0), second


# --- estimate helpers ------------------------------------------------------------------------


def _round_nanos(amount: Decimal) -> int:
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _parse_size(size: str) -> tuple[int, int] | None:
    match = _SIZE_RE.match(size)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def _output_tokens(
    table: Mapping[str, Mapping[str, int]], size: str | None, quality: str | None
) -> int:
    rows = [table[quality]] if quality is not None and quality in table else list(table.values())
    dims = None if size is None else _parse_size(size)
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
            entry = _parse_size(key)
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


def _per_image_key(key: str) -> tuple[str | None, str]:
    quality, _, size = key.rpartition(":")
    return quality or None, size


# --- loading ---------------------------------------------------------------------------------


class _Loader:
    """Validation of a parsed price file; every error becomes a PriceError naming the file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, where: str, problem: str) -> PriceError:
        return PriceError(f"{self.path}: {where}: {problem}")

    def table(self, data: Mapping[str, Any]) -> PriceTable:
        self.known_keys(data, _TOP_KEYS, "top level")
        version = data.get("version")
        if isinstance(version, date):
            version = version.isoformat()
        if version is None:
            raise self.fail("version", 'missing: add e.g. version = "2026-11-01" at the top')
        if not isinstance(version, str) or not version.strip():
            raise self.fail("version", f"must be a non-empty string, not {version!r}")
        default_tokens = None
        if "default_output_tokens" in data:
            default_tokens = self.output_tokens(
                data["default_output_tokens"], "default_output_tokens"
            )
        models_data = self.mapping(data.get("models", {}), "models")
        if not models_data:
            raise self.fail("models", "no models are priced")
        models: dict[str, ModelPrice] = {}
        for name, model_data in models_data.items():
            models[name] = self.model(name, model_data, default_tokens)
        aliases: dict[str, str] = {}
        for alias, base in self.mapping(data.get("aliases", {}), "aliases").items():
            where = f"aliases.{_quote(alias)}"
            if not isinstance(base, str):
                raise self.fail(where, f"must be a model name in quotes, not {base!r}")
            if alias in models:
                raise self.fail(where, "is also a model; a name is either a model or an alias")
            if base not in models:
                raise self.fail(where, f"names {base!r}, which is not a model in this file")
            aliases[alias] = base
        return PriceTable(
            version=version.strip(),
            path=self.path,
            models=MappingProxyType(models),
            aliases=MappingProxyType(aliases),
        )

    def model(
        self, name: str, data: Any, default_tokens: Mapping[str, Mapping[str, int]] | None
    ) -> ModelPrice:
        where = f"models.{_quote(name)}"
        data = self.mapping(data, where)
        self.known_keys(data, _MODEL_KEYS, where)
        source = data.get("source")
        if not isinstance(source, str) or not source.strip():
            raise self.fail(f"{where}.source", "missing: say where the figures come from")
        rates = {
            rate: None if rate not in data else self.money(data[rate], f"{where}.{rate}")
            for rate in _TOKEN_RATES
        }
        per_image: Mapping[str, Decimal] = MappingProxyType({})
        output_tokens: Mapping[str, Mapping[str, int]] = MappingProxyType({})
        complexity_tokens: Mapping[str, int] = MappingProxyType({})
        max_output_tokens: int | None = None
        if "complexity_tokens" in data:
            table = self.mapping(data["complexity_tokens"], f"{where}.complexity_tokens")
            complexity_tokens = MappingProxyType(
                {
                    name: self.tokens(value, f"{where}.complexity_tokens.{_quote(name)}")
                    for name, value in table.items()
                }
            )
        if "per_image" in data:
            per_image = self.per_image(data["per_image"], f"{where}.per_image")
            token_keys = [
                k
                for k in (*_TOKEN_RATES, "output_tokens", "complexity_tokens", "max_output_tokens")
                if k in data
            ]
            if token_keys:
                raise self.fail(
                    where,
                    f"has per_image and {', '.join(token_keys)}: a model is billed either per "
                    "image or per token",
                )
        elif rates["image_input"] is None and rates["image_output"] is None:
            # A text model: it authors SVG for image models and is priced by its own usage.
            missing = [rate for rate in _TEXT_MODEL_RATES if rates[rate] is None]
            if "max_output_tokens" not in data:
                missing.append("max_output_tokens")
            if missing:
                raise self.fail(
                    where,
                    f"missing {', '.join(missing)}: a text model (an SVG author) gives text_input,"
                    " text_output and max_output_tokens; an image model gives text_input,"
                    " image_input and image_output (USD per 1M tokens), or per_image",
                )
            max_output_tokens = self.tokens(data["max_output_tokens"], f"{where}.max_output_tokens")
        else:
            missing = [rate for rate in _REQUIRED_TOKEN_RATES if rates[rate] is None]
            if missing:
                raise self.fail(
                    where,
                    f"missing {', '.join(missing)} (USD per 1M tokens), or per_image for a model "
                    "billed per image",
                )
            if "output_tokens" in data:
                output_tokens = self.output_tokens(data["output_tokens"], f"{where}.output_tokens")
            elif default_tokens is not None:
                output_tokens = default_tokens
            else:
                raise self.fail(
                    where, "has no output_tokens table and the file has no [default_output_tokens]"
                )
        return ModelPrice(
            name=name,
            source=source.strip(),
            text_input=rates["text_input"],
            cached_text_input=rates["cached_text_input"],
            image_input=rates["image_input"],
            cached_image_input=rates["cached_image_input"],
            image_output=rates["image_output"],
            text_output=rates["text_output"],
            per_image=per_image,
            output_tokens=output_tokens,
            complexity_tokens=complexity_tokens,
            max_output_tokens=max_output_tokens,
        )

    def tokens(self, value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(where, f"must be a whole number of tokens, not {value!r}")
        return value

    def per_image(self, data: Any, where: str) -> Mapping[str, Decimal]:
        data = self.mapping(data, where)
        if not data:
            raise self.fail(where, "is empty")
        prices: dict[str, Decimal] = {}
        qualified = set()
        for key, value in data.items():
            quality, size = _per_image_key(key)
            bad_quality = key.startswith(":") or (quality is not None and ":" in quality)
            if _parse_size(size) is None or bad_quality:
                raise self.fail(
                    f"{where}.{_quote(key)}",
                    'key must be "WxH" or "quality:WxH", e.g. "hd:1024x1792"',
                )
            qualified.add(quality is not None)
            prices[key] = self.money(value, f"{where}.{_quote(key)}")
        if len(qualified) > 1:
            raise self.fail(where, 'mixes "WxH" and "quality:WxH" keys; use one form')
        return MappingProxyType(prices)

    def output_tokens(self, data: Any, where: str) -> Mapping[str, Mapping[str, int]]:
        data = self.mapping(data, where)
        if not data:
            raise self.fail(where, "is empty: give quality rows such as low, medium, high")
        table: dict[str, Mapping[str, int]] = {}
        for quality, row_data in data.items():
            row_where = f"{where}.{_quote(quality)}"
            row_data = self.mapping(row_data, row_where)
            if not row_data:
                raise self.fail(row_where, 'is empty: map sizes to tokens, e.g. "1024x1024" = 272')
            row: dict[str, int] = {}
            for size, tokens in row_data.items():
                entry_where = f"{row_where}.{_quote(size)}"
                if _parse_size(size) is None:
                    raise self.fail(entry_where, 'size must be "WxH", e.g. "1024x1024"')
                row[size] = self.tokens(tokens, entry_where)
            table[quality] = MappingProxyType(row)
        return MappingProxyType(table)

    def money(self, value: Any, where: str) -> Decimal:
        if isinstance(value, float):
            raise self.fail(
                where,
                f"{value!r} is a TOML float, which cannot hold money exactly; write prices as "
                'strings, e.g. "0.04"',
            )
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.fail(where, f'must be a decimal string such as "0.04", not {value!r}')
        try:
            amount = Decimal(value.strip() if isinstance(value, str) else value)
        except InvalidOperation:
            raise self.fail(where, f'{value!r} is not a decimal number such as "0.04"') from None
        if not amount.is_finite():
            raise self.fail(where, f"{value!r} is not a finite amount")
        if amount.is_signed():  # "-0" too: a price is never negative
            raise self.fail(where, f"{value!r} is negative")
        return amount

    def mapping(self, value: Any, where: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(where, f"must be a table, not {value!r}")
        return value

    def known_keys(self, data: Mapping[str, Any], known: frozenset[str], where: str) -> None:
        unknown = sorted(set(data) - known)
        if unknown:
            raise self.fail(
                where,
                f"unknown key {_quote(unknown[0])} (known: {', '.join(sorted(known))})",
            )


def _quote(key: str) -> str:
    """A TOML key as written in the file: bare if it can be, else in double quotes."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else f'"{key}"'
