"""The price table as rows for people (`gateway prices`)."""

from __future__ import annotations

from decimal import (
    Decimal,
)

from gateway.pricing.table import TOKEN_RATES, PriceTable


def describe(table: PriceTable) -> list[dict[str, str]]:
    """Rows for a CLI table, one per model in file order, every row with the same keys.

    model, billing ("tokens" or "per image"), each token rate as a decimal string in USD per 1M
    tokens ("" when none), per_image ("KEY=USD" pairs, space-separated; "" for token models),
    batch (the share of these prices a Batch API line costs), aliases (the names that resolve
    to the model, comma-separated) and source.
    """
    rows: list[dict[str, str]] = []
    for name, price in table.models.items():
        billing = "per image" if price.per_image_billing else "tokens"
        row = {
            "model": name,
            "billing": "text" if price.text_only else billing,
        }
        for rate in TOKEN_RATES:
            value: Decimal | None = getattr(price, rate)
            row[rate] = "" if value is None else f"{value:f}"
        row["per_image"] = " ".join(f"{key}={usd:f}" for key, usd in price.per_image.items())
        row["batch"] = f"{price.batch:f}"
        row["aliases"] = ", ".join(sorted(a for a, base in table.aliases.items() if base == name))
        row["source"] = price.source
        rows.append(row)
    return rows
