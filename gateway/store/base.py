"""Records and the interface every store implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

BUDGET_PERIODS = ("day", "week", "month", "total")


class Conflict(Exception):
    """A unique name or key is already taken."""


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


class Store(Protocol):
    """What the gateway asks of its database. Every method is a coroutine; none blocks the loop."""

    async def connect(self) -> None: ...
    async def close(self) -> None: ...
    async def migrate(self) -> list[str]:
        """Apply the migrations not yet applied, in order; return the names applied now."""
        ...

    async def ping(self) -> None: ...

    async def create_team(self, name: str, **limits: Any) -> Team: ...
    async def get_team(self, name: str) -> Team | None: ...
    async def list_teams(self) -> list[Team]: ...
    async def update_team(self, name: str, **changes: Any) -> Team | None: ...

    async def create_key(
        self,
        *,
        key_id: str,
        team_id: int,
        name: str | None,
        key_hash: str,
        prefix: str,
        **limits: Any,
    ) -> ApiKey: ...
    async def get_key(self, key_id: str) -> ApiKey | None: ...
    async def find_key_by_hash(self, key_hash: str) -> tuple[ApiKey, Team] | None: ...
    async def list_keys(self, team_id: int | None = None) -> list[ApiKey]: ...
    async def update_key(self, key_id: str, **changes: Any) -> ApiKey | None: ...
    async def revoke_key(self, key_id: str) -> ApiKey | None: ...
