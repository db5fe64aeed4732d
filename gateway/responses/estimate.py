"""What a Responses request may cost before it runs: the text model's part and the image tool's.

- Text: the input bounded from its size (a token is at least one byte: the instructions', the
  input's and the tools' bytes, plus framing; each input image at most 2,500 tokens), and the
  output at `max_output_tokens`, or the model's most when the request sets none, at the text
  model's prices.
- Images: one image exactly as `/v1/images/generations` (or `/edits`, with input images) would be
  estimated for the tool's model, size, quality, partial images and output format, times the
  images the response may make: `max_tool_calls`, else GATEWAY_RESPONSES_MAX_IMAGES.

What holds: a text model or image model the table does not price is refused by name before
anything is sent; the estimate is an upper bound of the charge in the usual case.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.accounting.quote import model_not_priced, quote
from gateway.errors import invalid_request
from gateway.money import MAX_REQUEST_NANOS, nanos_to_usd
from gateway.pricing import ModelPrice, PriceTable, Usage, usage_cost_nanos
from gateway.responses.request import ResponseAsk

# An input image as the text model reads it, at most (its tiles at high detail, or its patches:
# 1,536 patches × 1.62 for the mini models, the dearest published rule).
TEXT_MODEL_IMAGE_TOKENS = 2500


@dataclass(frozen=True, slots=True)
class ResponseQuote:
    text_price: ModelPrice
    image_price: ModelPrice
    text_input_nanos: int  # the input part: what a stream cut before any usage is charged
    text_nanos: int
    image_each_nanos: int  # one image
    images: int

    @property
    def nanos(self) -> int:
        return self.text_nanos + self.image_each_nanos * self.images


def quote_response(table: PriceTable, ask: ResponseAsk) -> ResponseQuote:
    text_price = table.lookup(ask.model)
    if text_price is None:
        raise model_not_priced(ask.model, "model")
    if not text_price.text_only:
        raise invalid_request(
            f"The model {ask.model!r} is an image model: a response is answered by a text model"
            " (gpt-5, gpt-4.1, o3…), which calls the image tool.",
            code="invalid_value",
            param="model",
        )
    if table.lookup(ask.image_model) is None:
        raise model_not_priced(ask.image_model, "tools")
    endpoint = "edits" if ask.input_images else "generations"
    image = quote(table, endpoint, ask.image, ask.input_images)
    assert image is not None  # unpriced image models are refused here, allowed or not
    if image.price.text_only or image.price.per_image_billing:
        raise model_not_priced(ask.image_model, "tools")
    # The text model reads the input's images too; it is charged them as text input.
    pictures = TEXT_MODEL_IMAGE_TOKENS * len(ask.input_images)
    read = Usage(ask.input_tokens_bound + pictures, 0, 0, 0, 0, 0)
    output = ask.max_output_tokens or text_price.max_output_tokens or 0
    input_nanos = usage_cost_nanos(text_price, read)
    text_nanos = input_nanos + usage_cost_nanos(text_price, Usage(0, 0, 0, 0, 0, output))
    quoted = ResponseQuote(
        text_price, image.price, input_nanos, text_nanos, image.estimate.nanos, ask.max_images
    )
    if quoted.nanos > MAX_REQUEST_NANOS:
        raise invalid_request(
            f"This response is estimated at ${nanos_to_usd(quoted.nanos)}, more than the"
            f" ${nanos_to_usd(MAX_REQUEST_NANOS)} one request may cost here. Set"
            " `max_output_tokens`, `max_tool_calls` or a smaller image `size`.",
            code="estimate_out_of_range",
        )
    return quoted
