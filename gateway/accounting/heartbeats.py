"""Which processes holding budget still live, across hosts.

A replica cannot ask another host's kernel whether a process runs, so every serving process
writes a heartbeat into the store each housekeeping round (`Heartbeats.beat`), and the holds of
an owner silent for `SILENT_S` are settled by whichever replica notices first, as `orphaned`
ledger rows charged their estimates, like those of a dead process on the same host
(journal.settle_holds). Without this, a replica killed on another host (a pod OOM-killed) would
keep its holds counted against its teams' budgets until they expire.

What holds:
- A process declares others dead only after its own heartbeats have gone through without a gap
  for `SILENT_S`. After an outage of the store that silenced every replica, each hears from the
  others again before anyone is declared dead.
- An owner that never wrote a heartbeat (a process of an older version) is never declared dead
  here; its holds settle when they expire.
- Hosts' clocks are assumed to agree within seconds (NTP); silence is counted in a minute.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from gateway.store.base import Store

log = logging.getLogger(__name__)
SILENT_S = 60.0
# A pause this long between this process's own beats (the store was down) starts its count again.
GAP_S = 30.0


class Heartbeats:
    def __init__(self, store: Store, owner: str, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.owner = owner
        self.clock = clock
        self._last: float | None = None
        self._steady_since = 0.0

    async def beat(self) -> list[str]:
        """Say that this process lives; return the owners of holds silent long enough to be
        dead (never this process)."""
        now = self.clock()
        await self.store.heartbeat(self.owner, now)
        if self._last is None or now - self._last > GAP_S:
            self._steady_since = now
        self._last = now
        if now - self._steady_since < SILENT_S:
            return []
        silent = [o for o in await self.store.silent_holders(now - SILENT_S) if o != self.owner]
        if silent:
            log.warning(
                "no heartbeat for %.0f s from %s: their holds are settled", SILENT_S, silent
            )
        return silent
