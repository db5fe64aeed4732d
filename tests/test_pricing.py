"""Pricing: the shipped price file, exact costs, estimates, and the price-file validation.

Every expected amount below is a literal worked out by hand from the seeds' tables (the
arithmetic is in the comment beside it), never computed by the code under test. Token rates are
USD per 1M tokens, so one token at $R/1M costs R × 1000 nano-dollars: $40/1M is 40_000 nanos a
token, $32/1M 32_000, $10/1M 10_000, $8/1M 8_000, $5/1M 5_000.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.pricing import (
    Estimate,
    EstimateRequest,
    ModelPrice,
    PriceError,
    PriceTable,
    Usage,
    describe,
    estimate,
    load_prices,
    per_image_cost_nanos,
    usage_cost_nanos,
)
from gateway.settings import SHIPPED_PRICES
from simulator import usage as sim

SHIPPED = SHIPPED_PRICES


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return load_prices(SHIPPED)


def price(table: PriceTable, model: str) -> ModelPrice:
    found = table.lookup(model)
    assert found is not None, model
    return found


def output_usage(tokens: int) -> Usage:
    return Usage(0, 0, 0, 0, tokens, 0)


def gen(model: str, **fields: Any) -> EstimateRequest:
    return EstimateRequest(model=model, **fields)


# --- the shipped file ----------------------------------------------------------------------------

# The seeds README, figure for figure: (text in, cached text in, image in, cached image in,
# image out, text out).
README_TOKEN_PRICES = {
    "gpt-image-1": ("5.00", "1.25", "10.00", "2.50", "40.00", None),
    "gpt-image-1-mini": ("2.00", "0.20", "2.50", "0.25", "8.00", None),
    "gpt-image-1.5": ("5.00", "1.25", "8.00", "2.00", "32.00", "10.00"),
    "chatgpt-image-latest": ("5.00", "1.25", "8.00", "2.00", "32.00", "10.00"),
    # Issue 10: copies of the official pricing page for gpt-image-2; the 2.5 family "aligned
    # with GPT Image 2" per public reports.
    "gpt-image-2": ("5.00", "1.25", "8.00", "2.00", "30.00", "10.00"),
    "gpt-image-2.5-sunburst": ("5.00", "1.25", "8.00", "2.00", "30.00", "10.00"),
    "gpt-image-2.5-flare": ("5.00", "1.25", "8.00", "2.00", "30.00", "10.00"),
    # Issue 22: published on OpenAI's model pages (the seeds README, 2026-12-06).
    "gpt-image-2.6-sunburst": ("5.00", "1.25", "8.00", "2.00", "30.00", "10.00"),
    "gpt-image-2.6-flare": ("5.00", "1.25", "8.00", "2.00", "30.00", "10.00"),
}
# Text models that author SVG output: (text in, cached text in, text out) per 1M tokens.
# The official pricing page's published text prices (2025): input, cached input, output.
OFFICIAL_TEXT_PRICES = {
    "gpt-5": ("1.25", "0.125", "10.00"),
    "gpt-5-mini": ("0.25", "0.025", "2.00"),
    "gpt-5-nano": ("0.05", "0.005", "0.40"),
    "gpt-5.1": ("1.25", "0.125", "10.00"),
    "gpt-4.1": ("2.00", "0.50", "8.00"),
    "gpt-4.1-mini": ("0.40", "0.10", "1.60"),
    "gpt-4.1-nano": ("0.10", "0.025", "0.40"),
    "gpt-4o": ("2.50", "1.25", "10.00"),
    "gpt-4o-mini": ("0.15", "0.075", "0.60"),
    "o3": ("2.00", "0.50", "8.00"),
    "o4-mini": ("1.10", "0.275", "4.40"),
}
README_PER_IMAGE = {
    "dall-e-2": {"256x256": "0.016", "512x512": "0.018", "1024x1024": "0.020"},
    "dall-e-3": {
        "standard:1024x1024": "0.040",
        "standard:1024x1792": "0.080",
        "standard:1792x1024": "0.080",
        "hd:1024x1024": "0.080",
        "hd:1024x1792": "0.120",
        "hd:1792x1024": "0.120",
    },
}
GUIDE_TABLE = {
    "low": {"1024x1024": 272, "1024x1536": 408, "1536x1024": 400},
    "medium": {"1024x1024": 1056, "1024x1536": 1584, "1536x1024": 1568},
    "high": {"1024x1024": 4160, "1024x1536": 6240, "1536x1024": 6208},
}


def test_shipped_file_has_version_and_every_model(table: PriceTable) -> None:
    assert table.version == "2026-12-06"
    assert table.path == str(SHIPPED)
    assert set(table.models) == (
        set(README_TOKEN_PRICES) | set(README_PER_IMAGE) | set(OFFICIAL_TEXT_PRICES)
    )
    for model in table.models.values():
        assert model.source


@pytest.mark.parametrize("model", sorted(OFFICIAL_TEXT_PRICES))
def test_shipped_text_prices_are_the_published_ones(table: PriceTable, model: str) -> None:
    p = table.models[model]
    expected = tuple(Decimal(v) for v in OFFICIAL_TEXT_PRICES[model])
    assert (p.text_input, p.cached_text_input, p.text_output) == expected
    assert p.text_only and p.max_output_tokens


@pytest.mark.parametrize("model", sorted(README_TOKEN_PRICES))
def test_shipped_token_prices_are_the_readmes(table: PriceTable, model: str) -> None:
    p = table.models[model]
    expected = tuple(None if v is None else Decimal(v) for v in README_TOKEN_PRICES[model])
    actual = (
        p.text_input,
        p.cached_text_input,
        p.image_input,
        p.cached_image_input,
        p.image_output,
        p.text_output,
    )
    assert actual == expected
    assert not p.per_image_billing
    assert p.per_image == {}


@pytest.mark.parametrize("model", sorted(README_PER_IMAGE))
def test_shipped_per_image_prices_are_the_readmes(table: PriceTable, model: str) -> None:
    p = table.models[model]
    assert p.per_image_billing
    assert dict(p.per_image) == {k: Decimal(v) for k, v in README_PER_IMAGE[model].items()}
    assert p.text_input is p.image_output is None


@pytest.mark.parametrize("model", ["gpt-image-1", "gpt-image-1.5", "chatgpt-image-latest"])
def test_shipped_output_tables_are_the_guides(table: PriceTable, model: str) -> None:
    # gpt-image-1 has its own copy; 1.5 and chatgpt-image-latest use [default_output_tokens].
    assert {q: dict(row) for q, row in table.models[model].output_tokens.items()} == GUIDE_TABLE


def test_mini_output_table_reproduces_its_official_per_image_prices(table: PriceTable) -> None:
    # Official mini per-image prices: low .005/.006/.006, medium .011/.015/.015,
    # high .036/.052/.052 USD; the derived counts at $8/1M (8_000 nanos a token) give them back.
    mini = table.models["gpt-image-1-mini"]
    per_image_nanos = {
        ("low", "1024x1024"): 5_000_000,  # 625 × 8_000
        ("low", "1024x1536"): 6_000_000,  # 750 × 8_000
        ("low", "1536x1024"): 6_000_000,  # 750 × 8_000
        ("medium", "1024x1024"): 11_000_000,  # 1375 × 8_000
        ("medium", "1024x1536"): 15_000_000,  # 1875 × 8_000
        ("medium", "1536x1024"): 15_000_000,  # 1875 × 8_000
        ("high", "1024x1024"): 36_000_000,  # 4500 × 8_000
        ("high", "1024x1536"): 52_000_000,  # 6500 × 8_000
        ("high", "1536x1024"): 52_000_000,  # 6500 × 8_000
    }
    for (quality, size), nanos in per_image_nanos.items():
        tokens = mini.output_tokens[quality][size]
        assert usage_cost_nanos(mini, output_usage(tokens)) == nanos
        assert estimate(mini, gen("gpt-image-1-mini", size=size, quality=quality)).nanos == nanos


def test_describe_lists_every_rate_as_text(table: PriceTable) -> None:
    rows = {row["model"]: row for row in describe(table)}
    assert list(rows) == list(table.models)
    assert len({tuple(row) for row in rows.values()}) == 1  # same columns in every row
    assert rows["gpt-image-1"]["image_output"] == "40.00"
    assert rows["gpt-image-1"]["text_output"] == ""
    assert rows["gpt-image-1.5"]["text_output"] == "10.00"
    assert rows["dall-e-2"]["billing"] == "per image"
    assert rows["dall-e-2"]["per_image"] == "256x256=0.016 512x512=0.018 1024x1024=0.020"
    assert rows["dall-e-2"]["text_input"] == ""
    assert rows["gpt-image-2"]["batch"] == "0.5" and rows["gpt-5"]["batch"] == "1"


def test_describe_lists_aliases(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '[aliases]\n"b-name" = "m"\n"a-name" = "m"\n')
    (row,) = describe(load_prices(path))
    assert row["aliases"] == "a-name, b-name"


# --- lookups -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "base"),
    [
        ("gpt-image-1", "gpt-image-1"),
        ("gpt-image-1-2025-04-23", "gpt-image-1"),
        ("gpt-image-1-mini-2025-10-06", "gpt-image-1-mini"),
        ("gpt-image-1.5-2025-12-16", "gpt-image-1.5"),
        ("dall-e-3-2024-01-01", "dall-e-3"),
    ],
)
def test_names_and_dated_snapshots_resolve(table: PriceTable, name: str, base: str) -> None:
    assert price(table, name).name == base


@pytest.mark.parametrize(
    "name",
    ["gpt-image-2.7-preview", "gpt-image-2.5-pro", "GPT-IMAGE-1", "", "-"],
)
def test_unpriced_models_look_up_as_none(table: PriceTable, name: str) -> None:
    assert table.lookup(name) is None


def test_aliases_resolve_and_their_snapshots_too(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '[aliases]\n"other" = "m"\n')
    loaded = load_prices(path)
    assert price(loaded, "other").name == "m"
    assert price(loaded, "other-2030-01-31").name == "m"
    assert loaded.lookup("other2") is None


# --- charges from usage --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quality", "size", "nanos"),
    [
        ("low", "1024x1024", 10_880_000),  # 272 × $40/1M = $0.01088
        ("low", "1024x1536", 16_320_000),  # 408 × 40_000
        ("low", "1536x1024", 16_000_000),  # 400 × 40_000
        ("medium", "1024x1024", 42_240_000),  # 1056 × 40_000
        ("medium", "1024x1536", 63_360_000),  # 1584 × 40_000
        ("medium", "1536x1024", 62_720_000),  # 1568 × 40_000
        ("high", "1024x1024", 166_400_000),  # 4160 × 40_000 = $0.1664
        ("high", "1024x1536", 249_600_000),  # 6240 × $40/1M = $0.2496
        ("high", "1536x1024", 248_320_000),  # 6208 × 40_000
    ],
)
def test_gpt_image_1_output_at_the_image_rate(
    table: PriceTable, quality: str, size: str, nanos: int
) -> None:
    p = price(table, "gpt-image-1")
    tokens = GUIDE_TABLE[quality][size]
    assert usage_cost_nanos(p, output_usage(tokens)) == nanos
    # The estimate of a generation with an empty prompt is exactly its output.
    assert estimate(p, gen("gpt-image-1", size=size, quality=quality)).nanos == nanos


def test_gpt_image_1_5_bills_text_output_at_its_own_rate(table: PriceTable) -> None:
    usage = Usage.from_api(
        {
            "input_tokens": 50,
            "output_tokens": 4200,
            "input_tokens_details": {"text_tokens": 50, "image_tokens": 0},
            "output_tokens_details": {"image_tokens": 4160, "text_tokens": 40},
        }
    )
    assert usage == Usage(50, 0, 0, 0, 4160, 40)
    # 50 × $5/1M = 250_000; 4160 × $32/1M = 133_120_000; 40 × $10/1M = 400_000
    assert usage_cost_nanos(price(table, "gpt-image-1.5"), usage) == 133_770_000


def test_output_without_details_is_billed_as_image_output(table: PriceTable) -> None:
    usage = Usage.from_api({"input_tokens": 10, "output_tokens": 1000, "total_tokens": 1010})
    assert usage == Usage(10, 0, 0, 0, 1000, 0)
    # 10 × $5/1M = 50_000; 1000 × $32/1M (image rate, not $10 text) = 32_000_000
    assert usage_cost_nanos(price(table, "gpt-image-1.5"), usage) == 32_050_000


def test_input_without_details_is_text(table: PriceTable) -> None:
    usage = Usage.from_api({"input_tokens": 100, "output_tokens": 272})
    # 100 × $5/1M = 500_000; 272 × $40/1M = 10_880_000
    assert usage_cost_nanos(price(table, "gpt-image-1"), usage) == 11_380_000


def test_cached_tokens_by_kind(table: PriceTable) -> None:
    usage = Usage.from_api(
        {
            "input_tokens": 1000,
            "output_tokens": 272,
            "input_tokens_details": {
                "text_tokens": 400,
                "image_tokens": 600,
                "cached_tokens": 300,
                "cached_tokens_details": {"text_tokens": 100, "image_tokens": 200},
            },
        }
    )
    assert usage == Usage(300, 100, 400, 200, 272, 0)
    # text 300 × $5/1M = 1_500_000; cached text 100 × $1.25/1M = 125_000;
    # image 400 × $10/1M = 4_000_000; cached image 200 × $2.50/1M = 500_000;
    # output 272 × $40/1M = 10_880_000; total 17_005_000
    assert usage_cost_nanos(price(table, "gpt-image-1"), usage) == 17_005_000


def test_cached_tokens_without_breakdown_come_from_text_first(table: PriceTable) -> None:
    usage = Usage.from_api(
        {
            "input_tokens": 1000,
            "input_tokens_details": {"text_tokens": 400, "image_tokens": 600, "cached_tokens": 500},
        }
    )
    assert usage == Usage(0, 400, 500, 100, 0, 0)
    # cached text 400 × $1.25/1M = 500_000; image 500 × $10/1M = 5_000_000;
    # cached image 100 × $2.50/1M = 250_000
    assert usage_cost_nanos(price(table, "gpt-image-1"), usage) == 5_750_000


def test_mini_cached_and_uncached(table: PriceTable) -> None:
    usage = Usage(
        text_input=1000,
        cached_text_input=1000,
        image_input=0,
        cached_image_input=0,
        image_output=1000,
        text_output=0,
    )
    # 1000 × $2/1M = 2_000_000; 1000 × $0.20/1M = 200_000; 1000 × $8/1M = 8_000_000
    assert usage_cost_nanos(price(table, "gpt-image-1-mini"), usage) == 10_200_000


def test_missing_rates_fall_back_to_the_nearest(table: PriceTable) -> None:
    bare = ModelPrice(
        name="bare",
        source="test",
        text_input=Decimal("5"),
        cached_text_input=None,
        image_input=Decimal("10"),
        cached_image_input=None,
        image_output=Decimal("40"),
        text_output=None,
        per_image={},
        output_tokens={},
    )
    # cached text at $5 (text): 100 × 5_000 = 500_000; cached image at $10: 10 × 10_000 = 100_000;
    # text output at $40 (image output): 10 × 40_000 = 400_000
    assert usage_cost_nanos(bare, Usage(0, 100, 0, 10, 0, 10)) == 1_000_000
    # gpt-image-1 has no text output rate: 10 text output tokens × $40/1M = 400_000
    assert usage_cost_nanos(price(table, "gpt-image-1"), Usage(0, 0, 0, 0, 0, 10)) == 400_000


def test_token_usage_on_a_per_image_model_is_refused(table: PriceTable) -> None:
    dalle = price(table, "dall-e-3")
    assert usage_cost_nanos(dalle, Usage(0, 0, 0, 0, 0, 0)) == 0
    with pytest.raises(ValueError, match="no rate for image_output"):
        usage_cost_nanos(dalle, output_usage(1))


def test_rounding_is_half_up_and_once(tmp_path: Path) -> None:
    text = 'version = "v"\n[models.m]\nsource = "t"\ntext_input = "0.0004"\n'
    text += 'image_input = "0.0004"\nimage_output = "0.0005"\n'
    text += '[models.m.output_tokens]\nlow = { "1024x1024" = 1 }\n'
    p = price(load_prices(write(tmp_path, text)), "m")
    # 1 token × $0.0005/1M = 0.5 nanos → 1 (half up; half even would give 0)
    assert usage_cost_nanos(p, output_usage(1)) == 1
    # 0.4 + 0.4 = 0.8 nanos → 1 (rounding each kind first would give 0)
    assert usage_cost_nanos(p, Usage(1, 0, 1, 0, 0, 0)) == 1
    # 0.4 nanos → 0
    assert usage_cost_nanos(p, Usage(1, 0, 0, 0, 0, 0)) == 0


def test_huge_counts_stay_exact(table: PriceTable) -> None:
    # 10**30 × $40/1M = 4 × 10**25 USD = 4 × 10**34 nanos, no float or precision loss
    assert usage_cost_nanos(price(table, "gpt-image-1"), output_usage(10**30)) == 4 * 10**34


def test_usage_details_that_leave_tokens_out() -> None:
    # Only image tokens given: the rest of input_tokens is text. Only text output given: the
    # rest of output_tokens is image output.
    usage = Usage.from_api(
        {
            "input_tokens": 300,
            "output_tokens": 500,
            "input_tokens_details": {"image_tokens": 194},
            "output_tokens_details": {"text_tokens": 20},
        }
    )
    assert usage == Usage(106, 0, 194, 0, 480, 20)
    # Details that sum to less than the total: the remainder is text in, image out.
    usage = Usage.from_api(
        {
            "input_tokens": 300,
            "output_tokens": 500,
            "input_tokens_details": {"text_tokens": 6, "image_tokens": 194},
            "output_tokens_details": {"image_tokens": 400, "text_tokens": 0},
        }
    )
    assert usage == Usage(106, 0, 194, 0, 500, 0)
    # Cached tokens never exceed their kind; nulls are "not given".
    usage = Usage.from_api(
        {
            "input_tokens": 10,
            "output_tokens": None,
            "input_tokens_details": {
                "text_tokens": 10,
                "image_tokens": None,
                "cached_tokens_details": {"text_tokens": 50, "image_tokens": 5},
            },
            "output_tokens_details": None,
        }
    )
    assert usage == Usage(0, 10, 0, 0, 0, 0)
    assert Usage.from_api({}) == Usage(0, 0, 0, 0, 0, 0)


@pytest.mark.parametrize(
    "usage",
    [
        {"input_tokens": "12"},
        {"input_tokens": 1.5},
        {"output_tokens": True},
        {"output_tokens": -1},
        {"input_tokens_details": [1, 2]},
        {"input_tokens_details": {"text_tokens": "x"}},
        {"input_tokens_details": {"cached_tokens_details": 3}},
        {"output_tokens_details": {"image_tokens": -5}},
    ],
)
def test_junk_usage_raises_value_error(usage: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Usage.from_api(usage)


def test_usage_is_never_negative() -> None:
    with pytest.raises(ValueError):
        Usage(-1, 0, 0, 0, 0, 0)
    with pytest.raises(ValueError):
        Usage.from_api([])  # type: ignore[arg-type]


# --- per-image models ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "nanos"),
    [
        ("256x256", 16_000_000),  # $0.016
        ("512x512", 18_000_000),  # $0.018
        ("1024x1024", 20_000_000),  # $0.020
        (None, 20_000_000),  # the API's default size, 1024x1024
        ("2048x2048", 20_000_000),  # unknown: the most expensive entry, $0.020
    ],
)
def test_dall_e_2_by_size(table: PriceTable, size: str | None, nanos: int) -> None:
    p = price(table, "dall-e-2")
    assert per_image_cost_nanos(p, size, None, 1) == nanos
    assert per_image_cost_nanos(p, size, "hd", 1) == nanos  # quality does not matter here
    assert estimate(p, gen("dall-e-2", size=size, prompt="x" * 100)) == Estimate(
        nanos, Usage(0, 0, 0, 0, 0, 0)
    )


@pytest.mark.parametrize(
    ("quality", "size", "nanos"),
    [
        ("standard", "1024x1024", 40_000_000),  # $0.040
        ("standard", "1024x1792", 80_000_000),  # $0.080
        ("standard", "1792x1024", 80_000_000),  # $0.080
        ("hd", "1024x1024", 80_000_000),  # $0.080
        ("hd", "1024x1792", 120_000_000),  # $0.120
        ("hd", "1792x1024", 120_000_000),  # $0.120
        (None, "1024x1024", 40_000_000),  # standard is the default
        (None, None, 40_000_000),  # standard, 1024x1024
        ("", "", 40_000_000),  # empty form fields: not given
        ("auto", "1024x1024", 40_000_000),  # auto: the API's default, standard
        ("auto", "1792x1024", 80_000_000),  # standard
        ("ultra", "1024x1024", 80_000_000),  # unknown quality: hd
        ("standard", "512x512", 80_000_000),  # unknown size: dearest standard entry
        ("auto", "auto", 80_000_000),  # standard, its dearest size
    ],
)
def test_dall_e_3_by_quality_and_size(
    table: PriceTable, quality: str | None, size: str | None, nanos: int
) -> None:
    p = price(table, "dall-e-3")
    assert per_image_cost_nanos(p, size, quality, 1) == nanos
    assert estimate(p, gen("dall-e-3", size=size, quality=quality)).nanos == nanos


def test_per_image_n(table: PriceTable) -> None:
    # 3 × $0.018 = $0.054
    assert per_image_cost_nanos(price(table, "dall-e-2"), "512x512", None, 3) == 54_000_000
    # 10 × $0.016 = $0.16
    request = gen("dall-e-2", endpoint="variations", size="256x256", n=10)
    assert estimate(price(table, "dall-e-2"), request).nanos == 160_000_000
    with pytest.raises(ValueError):
        per_image_cost_nanos(price(table, "gpt-image-1"), "1024x1024", None, 1)


# --- estimates for token models ------------------------------------------------------------------


def test_n_multiplies_output_not_input(table: PriceTable) -> None:
    p = price(table, "gpt-image-1")
    request = gen("gpt-image-1", quality="medium", size="1024x1024", n=4, prompt="abcd")
    result = estimate(p, request)
    # output 4 × 1056 = 4224 tokens × 40_000 = 168_960_000; text 4 × 5_000 = 20_000
    assert result.usage == Usage(4, 0, 0, 0, 4224, 0)
    assert result.nanos == 168_980_000


def test_partial_images_add_100_each_per_image(table: PriceTable) -> None:
    p = price(table, "gpt-image-1")
    streamed = gen(
        "gpt-image-1", quality="low", size="1024x1024", n=2, partial_images=3, stream=True
    )
    # (272 + 3 × 100) × 2 = 1144 tokens × 40_000 = 45_760_000
    assert estimate(p, streamed).usage.image_output == 1144
    assert estimate(p, streamed).nanos == 45_760_000
    # Not streaming: no partial images are sent, so none are charged: 272 × 2 × 40_000
    not_streamed = gen("gpt-image-1", quality="low", size="1024x1024", n=2, partial_images=3)
    assert estimate(p, not_streamed).nanos == 21_760_000


def test_text_input_is_bounded_by_the_prompts_bytes(table: PriceTable) -> None:
    p = price(table, "gpt-image-1")
    # 40 ASCII characters: 40 tokens at most
    assert estimate(p, gen("m", quality="low", size="1024x1024", prompt="a" * 40)).usage == Usage(
        40, 0, 0, 0, 272, 0
    )
    # "é" is 2 bytes in UTF-8; "猫" is 3: 5 tokens at most
    assert estimate(p, gen("m", prompt="é猫")).usage.text_input == 5


@pytest.mark.parametrize(
    ("dims", "tokens"),
    [
        ((1024, 1024), 194),  # shortest side → 512: 512x512, 1 tile: 65 + 129
        ((1536, 1024), 323),  # → 768x512: 2 × 1 tiles: 65 + 258
        ((4096, 1024), 581),  # fit 2048 → 2048x512: 4 tiles: 65 + 516
        ((300, 200), 194),  # never enlarged: 1 tile
        ((1000, 3000), 452),  # fit → 682.7x2048, shortest → 512: 512x1536, 3 tiles: 65 + 387
        ((2048, 2048), 194),  # → 512x512, 1 tile
        (None, 581),  # unknown: the worst case, 4 tiles
    ],
)
def test_edit_input_image_tokens(
    table: PriceTable, dims: tuple[int, int] | None, tokens: int
) -> None:
    request = gen(
        "gpt-image-1", endpoint="edits", quality="low", size="1024x1024", input_images=[dims]
    )
    assert estimate(price(table, "gpt-image-1"), request).usage.image_input == tokens


def test_edit_with_images_by_hand(table: PriceTable) -> None:
    request = gen(
        "gpt-image-1",
        endpoint="edits",
        quality="low",
        size="1024x1024",
        prompt="abcd",
        input_images=[(1024, 1024)],
    )
    result = estimate(price(table, "gpt-image-1"), request)
    assert result.usage == Usage(4, 0, 194, 0, 272, 0)
    # text 4 × $5/1M = 20_000; image 194 × $10/1M = 1_940_000; output 272 × $40/1M = 10_880_000
    assert result.nanos == 12_840_000
    # Several images: 323 + 581 + 194 + 452 + 581 (unknown) = 2131 tokens × $10/1M = 21_310_000
    many = gen(
        "gpt-image-1",
        endpoint="edits",
        quality="low",
        size="1024x1024",
        input_images=[(1536, 1024), (4096, 1024), (300, 200), (1000, 3000), None],
    )
    assert estimate(price(table, "gpt-image-1"), many).nanos == 21_310_000 + 10_880_000


def test_edit_without_listed_images_counts_one_unknown(table: PriceTable) -> None:
    request = gen("gpt-image-1", endpoint="edits", quality="low", size="1024x1024")
    assert estimate(price(table, "gpt-image-1"), request).usage.image_input == 581


def test_input_fidelity_high(table: PriceTable) -> None:
    p = price(table, "gpt-image-1")
    one = gen(
        "gpt-image-1",
        endpoint="edits",
        quality="low",
        size="1024x1024",
        input_images=[(1024, 1024)],
        input_fidelity="high",
    )
    # 194 + 4160 = 4354 image tokens × $10/1M = 43_540_000; output 10_880_000
    assert estimate(p, one).usage.image_input == 4354
    assert estimate(p, one).nanos == 54_420_000
    seven = gen(
        "gpt-image-1",
        endpoint="edits",
        quality="low",
        size="1024x1024",
        input_images=[(1024, 1024)] * 7,
        input_fidelity="high",
    )
    # 7 × 194 + 5 × 4160 (the first five at most) = 1358 + 20800 = 22158
    assert estimate(p, seven).usage.image_input == 22158
    low = gen("gpt-image-1", endpoint="edits", input_images=[(1024, 1024)], input_fidelity="low")
    assert estimate(p, low).usage.image_input == 194


@pytest.mark.parametrize(
    ("quality", "size", "tokens"),
    [
        ("auto", "auto", 6240),  # dearest of the whole table: high 1024x1536
        (None, None, 6240),
        (None, "1024x1024", 4160),  # the high row
        ("auto", "1536x1024", 6208),
        ("xhigh", "1536x1024", 6208),  # unknown quality: the dearest row
        ("low", None, 408),  # the dearest size of the low row
        ("low", "auto", 408),
        ("medium", "huge", 1584),  # not "WxH": the dearest size of the row
        ("medium", "2048x2048", 4224),  # by area: 1056 × 4
        ("high", "1000x1000", 3968),  # ceil(4160 × 1_000_000 / 1_048_576) = ceil(3967.29)
        ("low", "512x512", 68),  # 272 / 4
    ],
)
def test_auto_and_unknown_quality_and_size(
    table: PriceTable, quality: str | None, size: str | None, tokens: int
) -> None:
    result = estimate(price(table, "gpt-image-1"), gen("gpt-image-1", quality=quality, size=size))
    assert result.usage == output_usage(tokens)
    assert result.nanos == tokens * 40_000


def test_auto_estimate_by_hand(table: PriceTable) -> None:
    # high 1024x1536 = 6240 × $40/1M = $0.2496
    assert estimate(price(table, "gpt-image-1"), gen("gpt-image-1")).nanos == 249_600_000
    # gpt-image-1.5: 6240 × $32/1M = $0.19968
    assert estimate(price(table, "gpt-image-1.5"), gen("gpt-image-1.5")).nanos == 199_680_000


def test_bad_estimate_requests(table: PriceTable) -> None:
    with pytest.raises(ValueError):
        estimate(price(table, "gpt-image-1"), gen("gpt-image-1", n=-1))
    with pytest.raises(ValueError):
        estimate(price(table, "gpt-image-1"), gen("gpt-image-1", partial_images=-1))


# --- the estimate bounds what the simulator charges ----------------------------------------------

_GPT_MODELS = ["gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5", "chatgpt-image-latest"]
_sizes = st.one_of(
    st.sampled_from([None, "auto", "1024x1024", "1024x1536", "1536x1024"]),
    st.builds(lambda w, h: f"{w}x{h}", st.integers(1, 4096), st.integers(1, 4096)),
)
_dims = st.one_of(st.none(), st.tuples(st.integers(1, 10_000), st.integers(1, 10_000)))


def _simulator_usage(request: EstimateRequest) -> dict[str, Any]:
    """The usage the simulator reports for `request` (as simulator.params computes it)."""
    tier = sim.quality_tier(request.quality or "auto")
    if request.size is None or request.size == "auto":
        width, height = 1024, 1024
    else:
        width, height = (int(side) for side in request.size.split("x"))
    output = sim.output_tokens_per_image(tier, width, height)
    if request.stream:
        output += sim.PARTIAL_IMAGE_TOKENS * request.partial_images
    inputs = [dims or sim.DEFAULT_INPUT_SIZE for dims in request.input_images]
    image = sum(sim.image_input_tokens(w, h) for w, h in inputs)
    if inputs and request.input_fidelity == "high":
        image += sim.HIGH_FIDELITY_TOKENS
    usage = sim.Usage(sim.text_tokens(request.prompt), image, output * request.n)
    return usage.to_json()


@settings(max_examples=400, deadline=None)
@given(
    model=st.sampled_from(_GPT_MODELS),
    edit=st.booleans(),
    prompt=st.text(min_size=1, max_size=300),
    size=_sizes,
    quality=st.sampled_from([None, "auto", "low", "medium", "high", "xhigh"]),
    n=st.integers(1, 10),
    partial_images=st.integers(0, 3),
    stream=st.booleans(),
    images=st.lists(_dims, min_size=1, max_size=16),
    input_fidelity=st.sampled_from([None, "low", "high"]),
)
def test_estimate_is_an_upper_bound_of_the_simulators_charge(
    model: str,
    edit: bool,
    prompt: str,
    size: str | None,
    quality: str | None,
    n: int,
    partial_images: int,
    stream: bool,
    images: list[tuple[int, int] | None],
    input_fidelity: str | None,
) -> None:
    p = load_prices(SHIPPED).lookup(model)
    assert p is not None
    request = EstimateRequest(
        model=model,
        endpoint="edits" if edit else "generations",
        size=size,
        quality=quality,
        n=n,
        partial_images=partial_images,
        stream=stream,
        prompt=prompt,
        input_images=images if edit else (),
        input_fidelity=input_fidelity if edit else None,
    )
    charged = usage_cost_nanos(p, Usage.from_api(_simulator_usage(request)))
    assert estimate(p, request).nanos >= charged


# --- bad price files -----------------------------------------------------------------------------

MINIMAL = """\
version = "2026-12-02"
[models.m]
source = "test"
text_input = "5.00"
image_input = "10.00"
image_output = "40.00"
[models.m.output_tokens]
low = { "1024x1024" = 272 }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prices.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_file_loads(tmp_path: Path) -> None:
    loaded = load_prices(write(tmp_path, MINIMAL))
    assert loaded.version == "2026-12-02"
    assert price(loaded, "m").image_output == Decimal("40.00")


def test_integers_are_money_and_toml_dates_are_versions(tmp_path: Path) -> None:
    text = MINIMAL.replace('"2026-12-02"', "2026-12-02").replace('"40.00"', "40")
    loaded = load_prices(write(tmp_path, text))
    assert loaded.version == "2026-12-02"
    assert price(loaded, "m").image_output == Decimal(40)


def test_default_output_tokens_fill_in(tmp_path: Path) -> None:
    text = MINIMAL.split("[models.m.output_tokens]")[0]
    text += '[default_output_tokens]\nhigh = { "1024x1024" = 4160 }\n'
    assert price(load_prices(write(tmp_path, text)), "m").output_tokens == {
        "high": {"1024x1024": 4160}
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            MINIMAL.replace('"40.00"', "40.0"),
            r"models\.m\.image_output: 40\.0 is a TOML float.*"
            r'write prices as strings, e\.g\. "0\.04"',
        ),
        (MINIMAL.replace('"40.00"', '"-1"'), r"models\.m\.image_output: '-1' is negative"),
        (MINIMAL.replace('"40.00"', '"-0"'), r"models\.m\.image_output: '-0' is negative"),
        (MINIMAL.replace('"40.00"', "-3"), r"models\.m\.image_output: -3 is negative"),
        (MINIMAL.replace('"40.00"', '"forty"'), r"'forty' is not a decimal number"),
        (MINIMAL.replace('"40.00"', '"NaN"'), r"not a finite amount"),
        (MINIMAL.replace('"40.00"', "true"), r"must be a decimal string"),
        (MINIMAL.replace("image_output", "image_outptu"), r"unknown key image_outptu"),
        (
            MINIMAL.replace('source = "test"\n', 'source = "test"\ncurrency = "USD"\n'),
            r"models\.m: unknown key currency",
        ),
        (MINIMAL + "currency = 'USD'\n", r"models\.m\.output_tokens\.currency: must be a table"),
        ("extra = 1\n" + MINIMAL, r"top level: unknown key extra"),
        (MINIMAL.replace('version = "2026-12-02"\n', ""), r"version: missing"),
        (MINIMAL.replace('"2026-12-02"', '""'), r"version: must be a non-empty string"),
        (MINIMAL.replace('source = "test"\n', ""), r"models\.m\.source: missing"),
        (MINIMAL.replace('image_input = "10.00"\n', ""), r"models\.m: missing image_input"),
        (MINIMAL.replace('"1024x1024"', '"big"'), r'size must be "WxH"'),
        (MINIMAL.replace("= 272", "= 272.5"), r"must be a whole number of tokens"),
        (MINIMAL.replace("= 272", "= -1"), r"must be a whole number of tokens"),
        (MINIMAL.split("[models.m.output_tokens]")[0], r"no output_tokens table"),
        (MINIMAL + '[aliases]\nx = "nope"\n', r"aliases\.x: names 'nope'"),
        (MINIMAL + '[aliases]\nm = "m"\n', r"aliases\.m: is also a model"),
        (MINIMAL + '[models.m.per_image]\n"1024x1024" = "0.02"\n', r"billed either per image"),
        (
            'version = "v"\n[models.d]\nsource = "s"\n[models.d.per_image]\n"1x1" = 0.02\n',
            r"models\.d\.per_image\.1x1: 0\.02 is a TOML float",
        ),
        (
            'version = "v"\n[models.d]\nsource = "s"\n[models.d.per_image]\n"hd" = "0.02"\n',
            r'key must be "WxH" or "quality:WxH"',
        ),
        (
            'version = "v"\n[models.d]\nsource = "s"\n[models.d.per_image]\n":1x1" = "0.02"\n',
            r'key must be "WxH" or "quality:WxH"',
        ),
        (
            'version = "v"\n[models.d]\nsource = "s"\n[models.d.per_image]\n'
            '"1x1" = "1"\n"hd:1x1" = "2"\n',
            r"mixes",
        ),
        ('version = "v"\n', r"models: no models are priced"),
        ("version = \n", r"not valid TOML"),
    ],
)
def test_bad_price_files_raise_price_error(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PriceError, match=message) as info:
        load_prices(path)
    assert str(path) in str(info.value)


def test_missing_price_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(PriceError, match="cannot read the price file") as info:
        load_prices(path)
    assert str(path) in str(info.value)


# --- Batch API lines ---------------------------------------------------------------------------


def test_a_batch_line_costs_the_models_share_rounded_once(tmp_path: Path) -> None:
    shared = MINIMAL.replace('source = "test"\n', 'source = "test"\nbatch = "0.5"\n')
    loaded = load_prices(write(tmp_path, shared))
    m = price(loaded, "m")
    assert m.batch == Decimal("0.5")
    odd = Usage(text_input=3, cached_text_input=0, image_input=0, cached_image_input=0,
                image_output=1, text_output=0)  # fmt: skip
    online = usage_cost_nanos(m, odd)  # 3 × $5/1M + 1 × $40/1M = 55_000 nano-dollars
    assert online == 55_000 and usage_cost_nanos(m, odd, batch=True) == 27_500
    cheap = price(load_prices(write(tmp_path, shared.replace('"5.00"', '"0.003"'))), "m")
    one_token = Usage(1, 0, 0, 0, 0, 0)  # $0.003/1M = 3 nano-dollars; half is 1.5: rounded once
    assert usage_cost_nanos(cheap, one_token, batch=True) == 2
    assert usage_cost_nanos(cheap, Usage(3, 0, 0, 0, 0, 0), batch=True) == 5  # 4.5, not 3 × 2
    unshared = price(load_prices(write(tmp_path, MINIMAL)), "m")
    assert unshared.batch == 1 and usage_cost_nanos(unshared, odd, batch=True) == online


def test_the_shipped_image_models_are_half_price_in_a_batch(table: PriceTable) -> None:
    for name, model in table.models.items():
        assert model.batch == (Decimal(1) if model.text_only else Decimal("0.5")), name
    dalle = price(table, "dall-e-3")
    online = per_image_cost_nanos(dalle, "1024x1024", "standard", 2)
    assert per_image_cost_nanos(dalle, "1024x1024", "standard", 2, batch=True) * 2 == online


@pytest.mark.parametrize("share", ['"0"', '"1.5"', '"-0.5"', "0.5"])
def test_a_batch_share_outside_what_it_can_be_is_refused(tmp_path: Path, share: str) -> None:
    text = MINIMAL.replace('source = "test"\n', f'source = "test"\nbatch = {share}\n')
    with pytest.raises(PriceError, match=r"models\.m\.batch"):
        load_prices(write(tmp_path, text))
