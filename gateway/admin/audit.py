"""The audit trail: every change made through the admin API, the console or the CLI, kept as
`{at, actor, action, target, before, after}`.

What holds: the functions that change teams, keys and the cache (accounts.py, and the purges)
write their entry after the change, naming who made it (`admin-api (address)`, `console
(session)`, `cli (OS user)`); the records kept are the views people see, never a key's secret or
hash. Reading it is `GET /admin/audit`, the console's Audit page and `gateway audit`.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
from typing import Any

from gateway.store import Store

SYSTEM = "system"


def cli_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli ({user})"


async def record(
    store: Store,
    actor: str,
    action: str,
    target: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    """One entry; `before` and `after` the changed record as people see it (or None)."""
    await store.add_audit(
        at=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        actor=actor[:200],
        action=action,
        target=target[:200],
        before=None if before is None else json.dumps(before, sort_keys=True),
        after=None if after is None else json.dumps(after, sort_keys=True),
    )


def entry_view(row: tuple[Any, ...]) -> dict[str, Any]:
    entry_id, at, actor, action, target, before, after = row
    return {
        "id": entry_id,
        "at": at,
        "actor": actor,
        "action": action,
        "target": target,
        "before": None if before is None else json.loads(before),
        "after": None if after is None else json.loads(after),
    }
