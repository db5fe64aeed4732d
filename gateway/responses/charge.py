"""What a response costs: the text model's tokens at its prices, plus the image tool's
`tool_usage.image_gen` at the image model's prices, exact to the nano-dollar.

What holds: both parts are kept (they add up to the charge); a response is never $0 by accident:
a 200 whose usage cannot be read is charged its estimate (`usage_missing`), and a stream cut
before its usage came is charged the input it sent and the images it delivered, partial images
included, as the Images API's cut streams are; the cache's answers cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.outcome import Outcome
from gateway.pricing import PARTIAL_IMAGE_TOKENS, ModelPrice, Usage, usage_cost_nanos
from gateway.proxy.flow import Flow


@dataclass(frozen=True, slots=True)
class ResponseCharge:
    text_nanos: int
    image_nanos: int
    usage_missing: bool = False

    @property
    def nanos(self) -> int:
        return self.text_nanos + self.image_nanos


def charge_parts(
    text_price: ModelPrice,
    image_price: ModelPrice,
    text: Usage | None,
    image: Usage | None,
    images: int,
    *,
    text_estimate_nanos: int,
    image_each_nanos: int,
) -> ResponseCharge:
    """A finished response's charge from its two usages; a usage that cannot be read stands at
    its part of the estimate."""
    missing = text is None or (image is None and images > 0)
    text_nanos = text_estimate_nanos if text is None else usage_cost_nanos(text_price, text)
    if image is not None:
        image_nanos = usage_cost_nanos(image_price, image)
    else:
        image_nanos = image_each_nanos * images
    return ResponseCharge(text_nanos, image_nanos, missing)


def cut_charge(
    image_price: ModelPrice, images: int, partials: int, *, input_nanos: int, image_each_nanos: int
) -> ResponseCharge:
    """A stream cut before its usage came: the input it read, each image it finished at its
    estimate, and the partial images since at the partial image's tokens."""
    partial = usage_cost_nanos(image_price, Usage(0, 0, 0, 0, partials * PARTIAL_IMAGE_TOKENS, 0))
    return ResponseCharge(input_nanos, image_each_nanos * images + partial)


def response_charge(flow: Flow, status: int, outcome: Outcome) -> ResponseCharge:
    """What the request is charged, given its status and outcome (close_the_books)."""
    bill, answer = flow.bill, flow.answer
    text_price, image_price = bill.text_price, bill.price
    if text_price is None or image_price is None or status != 200 or answer.served is not None:
        return ResponseCharge(0, 0)
    if answer.pending:  # a background response still running: charged when it ends
        return ResponseCharge(0, 0)
    text_estimate = bill.estimate_nanos - bill.image_each_nanos * flow.n
    if answer.text_usage is None and answer.usage is None:
        if outcome in (Outcome.STREAM_CUT, Outcome.UPSTREAM_ERROR) or answer.abandoned:
            cut = cut_charge(
                image_price, answer.images, answer.partial_images_pending,
                input_nanos=bill.text_input_nanos, image_each_nanos=bill.image_each_nanos,
            )  # fmt: skip
            if not answer.abandoned:
                return cut
            # No longer read: upstream may finish it all the same.
            return ResponseCharge(max(text_estimate, cut.text_nanos),
                                  max(bill.image_each_nanos * flow.n, cut.image_nanos))  # fmt: skip
        return ResponseCharge(text_estimate, bill.image_each_nanos * flow.n, usage_missing=True)
    text = None if answer.text_usage is None else answer.text_usage.bounded()[0]
    image = None if answer.usage is None else answer.usage.bounded()[0]
    return charge_parts(
        text_price, image_price, text, image, answer.images,
        text_estimate_nanos=text_estimate, image_each_nanos=bill.image_each_nanos,
    )  # fmt: skip
