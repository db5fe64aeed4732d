"""What became of a request, and how the cache took part: the one source the ledger row, the
metrics, the log line and the usage report all read, so that their counts agree by construction.

A refusal is raised as a `GatewayError` that carries its `Outcome`; a request that ends without
one gets its outcome from what it was answered. Whether an outcome is a refusal is decided here
and nowhere else (`REFUSALS`), and the SQL of the usage report is built from the same set.
"""

from __future__ import annotations

from enum import StrEnum


class CacheStatus(StrEnum):
    """What `x-gateway-cache` says: how the cache took part in answering."""

    HIT = "hit"  # a stored entry (or a twin's whole answer, on its way into the store)
    COALESCED = "coalesced"  # waited for an identical request in flight and shared its answer
    MISS = "miss"  # cacheable, and went upstream (its answer is stored when complete)
    BYPASS = "bypass"  # the cache took no part (off, no-store, a refusal, not cacheable)

    @property
    def served_by_cache(self) -> bool:
        """Answered without an upstream call of its own."""
        return self in (CacheStatus.HIT, CacheStatus.COALESCED)


class Outcome(StrEnum):
    """The contract's ledger outcomes (docs/accounting.md, "Ledger"), and `refused_auth`, which
    has no ledger row (there is no key to charge) but is counted and logged like the others."""

    OK = "ok"
    USAGE_MISSING = "usage_missing"  # a 200 whose usage could not be read: charged the estimate
    REFUSED_AUTH = "refused_auth"
    REFUSED_BUDGET = "refused_budget"
    REFUSED_RATE = "refused_rate"
    REFUSED_POLICY = "refused_policy"  # outside its key's or team's policy (accounting/policy.py)
    INVALID = "invalid"  # the gateway's own 4xx refusal of a malformed or unpriced request
    UPSTREAM_ERROR = "upstream_error"
    STREAM_CUT = "stream_cut"
    CLIENT_GONE = "client_gone"  # the client left before the upstream call began
    ERROR = "error"  # the gateway failed (a 500): a bug to report
    ORPHANED = "orphaned"  # a hold whose process died, settled at its estimate

    @property
    def refused(self) -> bool:
        return self in REFUSALS


REFUSALS = frozenset(
    {
        Outcome.REFUSED_AUTH,
        Outcome.REFUSED_BUDGET,
        Outcome.REFUSED_RATE,
        Outcome.REFUSED_POLICY,
        Outcome.INVALID,
    }
)


def sql_refused(column: str) -> str:
    """An SQL condition: `column` holds a refusal."""
    listed = ", ".join(f"'{outcome.value}'" for outcome in sorted(REFUSALS))
    return f"{column} IN ({listed})"
