"""Whether this process can write what it must record: the store's writes and the journal's.

What holds: a failure is remembered until a write of the same kind succeeds, so `/readyz` tells
the truth between requests, and recovers by itself (it probes a write while one is remembered).
"""

from __future__ import annotations

from gateway.store.failures import describe


class WriteHealth:
    def __init__(self) -> None:
        self.store_problem: str | None = None
        self.journal_problem: str | None = None

    def store_wrote(self) -> None:
        self.store_problem = None

    def store_failed(self, exc: BaseException) -> None:
        self.store_problem = describe(exc)

    def journal_wrote(self) -> None:
        self.journal_problem = None

    def journal_failed(self, exc: BaseException) -> None:
        self.journal_problem = describe(exc)
