"""Model prices, and what a request costs, exact to the nano-dollar.

The price file (setting `GATEWAY_PRICES`; `config/prices.toml`, shipped in the package as
gateway.config) is read by `load_prices` into a `PriceTable`; every figure is validated there,
so the rest of the gateway can trust it. Two kinds of model exist:

* token-billed (GPT image models): USD per 1M tokens for each kind of token, and an
  output-token table (quality -> size -> tokens per image) used only for estimates;
* per-image (DALL·E): USD per image by size, or by quality and size.

Money never passes through `float`: rates are `Decimal`, costs are integer nano-dollars
(`gateway.money.NANOS_PER_USD` per USD), summed exactly and rounded once, half up.

`usage_cost_nanos` prices a response's `usage` (read by `Usage.from_api`): that is the charge.
`estimate` prices a request before it runs, for budget checks and reservations: in the usual case
it is an upper bound of the charge (see its docstring for what "usual" covers).
"""

from gateway.pricing.charge import per_image_cost_nanos, usage_cost_nanos
from gateway.pricing.describe import describe
from gateway.pricing.estimate import (
    MAX_GIF_FRAMES,
    Estimate,
    EstimateRequest,
    estimate,
    image_input_tokens,
)
from gateway.pricing.table import ModelPrice, PriceBook, PriceError, PriceTable, load_prices
from gateway.pricing.usage import NO_USAGE, PARTIAL_IMAGE_TOKENS, SvgUsage, Usage

__all__ = [
    "MAX_GIF_FRAMES",
    "NO_USAGE",
    "PARTIAL_IMAGE_TOKENS",
    "Estimate",
    "EstimateRequest",
    "ModelPrice",
    "PriceBook",
    "PriceError",
    "PriceTable",
    "SvgUsage",
    "Usage",
    "describe",
    "estimate",
    "image_input_tokens",
    "load_prices",
    "per_image_cost_nanos",
    "usage_cost_nanos",
]
