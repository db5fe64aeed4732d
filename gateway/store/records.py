"""The records every part of the gateway reads: a team and an API key (never its secret: the
store keeps only its hash)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Team:
    id: int
    name: str
    budget_nanos: int | None
    budget_period: str
    rpm: int | None
    ipm: int | None
    created_at: str


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    team_id: int
    team_name: str
    name: str | None
    prefix: str
    budget_nanos: int | None
    budget_period: str
    rpm: int | None
    ipm: int | None
    created_at: str
    revoked_at: str | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None
