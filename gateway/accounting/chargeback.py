"""Chargeback: a team may be charged a multiple of what upstream charges (an internal price:
`price_multiplier`, a decimal string; none is 1). What the team is charged is what its budgets
hold and count, what `x-gateway-cost-usd` says and what its reports sum; the ledger keeps
upstream's cost beside it.

What holds: exact money, rounded once, half up, to the nano-dollar; a multiplier of 1 changes
nothing.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from gateway.store import Team

MAX_MULTIPLIER = Decimal(1000)


def multiplier(team: Team | None) -> Decimal:
    if team is None or not team.price_multiplier:
        return Decimal(1)
    return Decimal(team.price_multiplier)


def charged(team: Team | None, nanos: int) -> int:
    """What the team is charged for `nanos` of upstream's cost."""
    factor = multiplier(team)
    if factor == 1:
        return nanos
    return int((Decimal(nanos) * factor).quantize(Decimal(1), rounding=ROUND_HALF_UP))
