"""Exact money: integer nano-dollars inside, decimal strings outside. Never `float`."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

NANOS_PER_USD = 1_000_000_000
# The most one request may be estimated at or charged: $1,000,000. No image request comes near
# it, and thousands of them still add up within the store's 64-bit integers (spend counters,
# budgets of at most $10**9). A request estimated above it is refused; a usage that costs more
# is charged this and flagged (`usage_out_of_range`).
MAX_REQUEST_NANOS = 10**15


def usd_to_nanos(value: Decimal | str | int) -> int:
    """Dollars (a decimal string, an int or a Decimal) to nano-dollars, rounding half to even.

    Raises ValueError for anything that is not a finite number.
    """
    if isinstance(value, bool):
        raise ValueError("a boolean is not an amount of money")
    try:
        amount = Decimal(value)
    except (InvalidOperation, TypeError) as exc:
        raise ValueError(f"not an amount of money: {value!r}") from exc
    if not amount.is_finite():
        raise ValueError(f"not an amount of money: {value!r}")
    return int((amount * NANOS_PER_USD).to_integral_value(rounding=ROUND_HALF_EVEN))


def nanos_to_usd(nanos: int) -> str:
    """Nano-dollars as a decimal string with at least two decimals: 12.5 USD → "12.50"."""
    amount = (Decimal(nanos) / NANOS_PER_USD).normalize()
    if amount.as_tuple().exponent > -2:  # type: ignore[operator]
        amount = amount.quantize(Decimal("0.01"))
    return f"{amount:f}"
