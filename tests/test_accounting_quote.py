"""A request's prices and estimate, by the same rules for every door (no server): refusals by
name, unpriced models only where the operator allows them, an SVG author priced, and the input
images of a JSON edit read from their data URLs."""

from __future__ import annotations

import base64

import pytest

from gateway.accounting.quote import json_input_images, quote
from gateway.edge.params import read_params
from gateway.errors import GatewayError
from gateway.pricing import PriceTable, load_prices
from gateway.settings import SHIPPED_PRICES
from tests.images import png

TABLE: PriceTable = load_prices(SHIPPED_PRICES)


def test_a_priced_model_is_quoted_and_a_bigger_request_dearer() -> None:
    small = quote(
        TABLE, "generations", read_params({"prompt": "p", "quality": "low"}, "gpt-image-2"), []
    )
    big = quote(
        TABLE,
        "generations",
        read_params({"prompt": "p", "quality": "high", "n": 3}, "gpt-image-2"),
        [],
    )
    assert small is not None and big is not None
    assert small.price.name == "gpt-image-2" and small.svg_author is None
    assert 0 < small.estimate.nanos < big.estimate.nanos


def test_refusals_name_what_cannot_be_priced() -> None:
    for model, code in (("no-such-model", "model_not_priced"), ("gpt-5-mini", "invalid_value")):
        with pytest.raises(GatewayError) as refused:
            quote(TABLE, "generations", read_params({"prompt": "p"}, model), [])
        assert refused.value.code == code and refused.value.param == "model"
    assert (
        quote(TABLE, "generations", read_params({}, "no-such-model"), [], allow_unpriced=True)
        is None
    )
    svg = read_params(
        {"prompt": "p", "output_format": "svg", "svg": {"model": "nope"}}, "gpt-image-2"
    )
    with pytest.raises(GatewayError) as refused:
        quote(TABLE, "generations", svg, [])
    assert refused.value.param == "svg.model"


def test_a_json_edits_images_are_read_from_their_data_urls() -> None:
    data_url = "data:image/png;base64," + base64.b64encode(png(320, 200)).decode()
    images = [{"image_url": data_url}, {"file_id": "file-1"}, {"image_url": "https://x/y.png"}]
    assert json_input_images({"images": images}) == [(320, 200), None, None]
    assert json_input_images({"images": "not a list"}) == []
