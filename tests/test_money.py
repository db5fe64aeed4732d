from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.money import nanos_to_usd, usd_to_nanos


@pytest.mark.parametrize(
    ("usd", "nanos"),
    [
        ("12.50", 12_500_000_000),
        (3, 3_000_000_000),
        (Decimal("0.000000001"), 1),
        ("0", 0),
        ("0.04", 40_000_000),
    ],
)
def test_usd_to_nanos_is_exact(usd: str | int | Decimal, nanos: int) -> None:
    assert usd_to_nanos(usd) == nanos


@pytest.mark.parametrize(
    ("nanos", "text"),
    [
        (12_500_000_000, "12.50"),
        (0, "0.00"),
        (40_000_000, "0.04"),
        (1, "0.000000001"),
        (123_456_789_012, "123.456789012"),
    ],
)
def test_nanos_to_usd_keeps_two_decimals_at_least(nanos: int, text: str) -> None:
    assert nanos_to_usd(nanos) == text


@pytest.mark.parametrize("bad", ["abc", "NaN", "Infinity", True])
def test_usd_to_nanos_refuses_what_is_not_money(bad: object) -> None:
    with pytest.raises(ValueError):
        usd_to_nanos(bad)  # type: ignore[arg-type]
