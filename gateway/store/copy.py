"""`gateway db copy`: every table a gateway keeps, from one store to another (SQLite to
PostgreSQL when a deployment moves up to several replicas, or back).

What holds: the target is migrated first and must be empty (unless told to overwrite it); rows go
over as they are (ids, key hashes, budgets, spend, the ledger, holds, the cache index); then the
row counts and the money sums of both sides are compared, and any difference is an error. Run it
with the gateway stopped: rows written meanwhile would not be copied. Cache bodies stored as
files stay where they are (copy `data/cache/` or point the target's cache at it); small bodies
kept in the index come along.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.store import migrated_store
from gateway.store.base import COPIED_TABLES


class CopyRefused(Exception):
    """The copy did not start (or did not check out): the message says why."""


@dataclass(frozen=True)
class CopyReport:
    totals: dict[str, int]


async def copy_store(source_url: str, target_url: str, *, overwrite: bool = False) -> CopyReport:
    async with migrated_store(source_url) as source, migrated_store(target_url) as target:
        before = await target.totals()
        if any(before[table] for table in COPIED_TABLES):
            if not overwrite:
                held = ", ".join(f"{before[t]} {t}" for t in COPIED_TABLES if before[t])
                raise CopyRefused(
                    f"the target is not empty ({held}); pass --overwrite to replace what it holds"
                )
            await target.clear()
        for table in COPIED_TABLES:
            columns, rows = await source.dump(table)
            if rows:
                await target.load(table, columns, rows)
        expected, copied = await source.totals(), await target.totals()
    if expected != copied:
        differences = ", ".join(
            f"{name}: {expected[name]} → {copied.get(name)}"
            for name in expected
            if expected[name] != copied.get(name)
        )
        raise CopyRefused(f"the copy does not match its source: {differences}")
    return CopyReport(expected)
