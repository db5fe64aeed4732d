"""What a request may cost before it runs, by the same rules whatever door it came through (an
online request, a batch line): the model's prices, the SVG author's, and the estimate.

What holds: a text model is never asked for an image; a model with no price is refused by name
(unless the operator allows unpriced models); an SVG author with no price is refused always; no
request is estimated above MAX_REQUEST_NANOS.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.edge.imageinfo import image_dimensions
from gateway.edge.params import ImageParams
from gateway.errors import GatewayError, invalid_request
from gateway.money import MAX_REQUEST_NANOS, nanos_to_usd
from gateway.pricing import Estimate, EstimateRequest, ModelPrice, PriceTable, estimate


@dataclass(frozen=True, slots=True)
class Quote:
    price: ModelPrice
    svg_author: ModelPrice | None  # the text model that authors an SVG, when one is asked for
    estimate: Estimate


def quote(
    table: PriceTable,
    endpoint: str,
    parsed: ImageParams,
    input_images: Sequence[tuple[int, int] | None],
    *,
    allow_unpriced: bool = False,
) -> Quote | None:
    """The request's prices and estimate; None for an unpriced model the operator allows."""
    model = parsed.model
    assert model is not None
    price = table.lookup(model)
    if price is not None and price.text_only:
        raise invalid_request(
            f"The model {model!r} is a text model: it can author SVG output (svg.model),"
            " not make images.",
            code="invalid_value",
            param="model",
        )
    if price is None:
        if allow_unpriced:
            return None
        raise model_not_priced(model, "model")
    svg_author = None
    if parsed.output_format == "svg" and not price.per_image_billing:
        svg_author = _svg_author(table, parsed.svg_model)
    request = EstimateRequest(
        model=model,
        endpoint=endpoint,
        size=parsed.size,
        quality=parsed.quality,
        n=parsed.n,
        partial_images=parsed.partial_images,
        stream=parsed.stream,
        prompt=parsed.prompt,
        input_images=input_images,
        input_fidelity=parsed.input_fidelity,
        output_format=parsed.output_format,
        frame_count=parsed.frame_count,
        complexity=parsed.complexity,
    )
    estimated = estimate(price, request, svg_author)
    if estimated.nanos > MAX_REQUEST_NANOS:
        raise invalid_request(
            f"This request is estimated at ${nanos_to_usd(estimated.nanos)}, more than the"
            f" ${nanos_to_usd(MAX_REQUEST_NANOS)} one request may cost here. Ask for a smaller"
            " `size`, a lower `quality` or fewer images (`n`).",
            code="estimate_out_of_range",
        )
    return Quote(price, svg_author, estimated)


def json_input_images(params: Mapping[str, Any]) -> list[tuple[int, int] | None]:
    """Dimensions of a JSON edit's input images (`images: [{image_url}]`), read from the data
    URLs' image headers (None where unknown: a file id, a remote URL)."""
    images = params.get("images")
    if not isinstance(images, list):
        return []
    return [_data_url_dimensions(item) for item in images]


def _data_url_dimensions(item: Any) -> tuple[int, int] | None:
    url = item.get("image_url") if isinstance(item, dict) else None
    if not isinstance(url, str) or not url.startswith("data:") or "," not in url:
        return None
    encoded = url.split(",", 1)[1][:4096]
    try:
        return image_dimensions(base64.b64decode(encoded[: len(encoded) // 4 * 4]))
    except (binascii.Error, ValueError):
        return None


def _svg_author(table: PriceTable, name: str | None) -> ModelPrice:
    """The text model that will author an SVG: the one named, which must be priced; when none
    is named (upstream picks), the dearest text model the table knows, for an upper bound."""
    if name is not None:
        author = table.lookup(name)
        if author is None or not author.text_only:
            raise model_not_priced(name, "svg.model")
        return author
    author = table.dearest_text_model()
    if author is None:
        raise invalid_request(
            "SVG output is authored by a text model, and this gateway's price table has none, so"
            " its cost cannot be charged. Ask the operator to add one to the price table.",
            code="model_not_priced",
            param="svg.model",
        )
    return author


def model_not_priced(model: str, param: str) -> GatewayError:
    return invalid_request(
        f"The model {model!r} has no price in this gateway's price table, so its cost cannot be"
        " charged. Ask the operator to add it to the price table.",
        code="model_not_priced",
        param=param,
    )
