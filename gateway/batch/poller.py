"""Housekeeping's part in the Batch API: batches in flight are asked after upstream at a bounded
rate, and settled when they end, by whichever replica takes each one's lease.

What holds: each round asks about at most ROUND_LIMIT batches, none more often than
`GATEWAY_BATCH_POLL_S`; a batch whose replica died is taken up by another once its lease runs
out (settle.py), or by the same one after a restart.
"""

from __future__ import annotations

import logging
import time

from gateway.accounting.journal import this_process
from gateway.batch.settle import settle_batch
from gateway.errors import GatewayError
from gateway.runtime.services import Services

log = logging.getLogger(__name__)
ROUND_LIMIT = 20


async def poll_batches(services: Services) -> int:
    """One round: the batches due are asked after, and settled if they ended. How many were
    settled."""
    store, now = services.store, time.time()
    due = await store.batches_to_poll(now - services.settings.batch_poll_s, ROUND_LIMIT)
    settled = 0
    for batch_id in due:
        try:
            settled += await settle_batch(services, batch_id, this_process())
        except GatewayError as exc:  # upstream is sick: asked again next time it is due
            log.warning("batch %s not polled: %s", batch_id, exc.message)
            await store.update_batch(batch_id, polled_at=now)
    return settled
