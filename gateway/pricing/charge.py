"""What a response costs: its usage, or its images, at the model's prices, exact to the
nano-dollar (rates are `Decimal`, sums exact, rounded once, half up)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import (
    MAX_EMAX,
    MAX_PREC,
    MIN_EMIN,
    ROUND_CEILING,
    ROUND_HALF_UP,
    Context,
    Decimal,
    InvalidOperation,
    Overflow,
    localcontext,
)
from types import MappingProxyType

from gateway.money import NANOS_PER_USD
from gateway.pricing.table import ModelPrice, per_image_key
from gateway.pricing.usage import Usage

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


# Per-image models: the API's defaults when a request names no quality or size.
_PER_IMAGE_DEFAULT_QUALITY = "standard"
_PER_IMAGE_DEFAULT_SIZE = "1024x1024"


def usage_cost_nanos(price: ModelPrice, usage: Usage, *, batch: bool = False) -> int:
    """The cost of `usage` at `price`'s token rates, in nano-dollars (with `batch`, at the
    model's Batch API share of them).

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
        if batch:
            total *= price.batch
        return _round_nanos(total * _NANOS_PER_RATE_UNIT)


def per_image_cost_nanos(
    price: ModelPrice, size: str | None, quality: str | None, n: int, *, batch: bool = False
) -> int:
    """The cost of `n` images of a per-image model, in nano-dollars (with `batch`, at the
    model's Batch API share of its prices).

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
    entries = [(*per_image_key(key), usd) for key, usd in price.per_image.items()]
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
        share = price.batch if batch else Decimal(1)
        return _round_nanos(each * n * share * NANOS_PER_USD)


def batch_share_nanos(nanos: int, share: Decimal) -> int:
    """`share` of an estimate of `nanos`, rounded up (an upper bound stays one)."""
    with localcontext(_EXACT):
        return int((nanos * share).to_integral_value(rounding=ROUND_CEILING))


def _round_nanos(amount: Decimal) -> int:
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))
