"""Whether and how a request uses the cache: its key, and whether it may read and write.

- Only the known endpoints' POSTs are cached (`generations`, `edits`, `variations`); other
  `/v1/images/*` paths pass through untouched.
- `Cache-Control: no-store` (or caching off, globally or for the request's team) neither reads
  nor writes: `bypass`. `Cache-Control: no-cache` (or `Pragma: no-cache`) skips the lookup and
  does not join a twin in flight, but stores the fresh response.
- The scope is the team by default; `cache_scope` narrows it to the key or widens it to all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.settings import Settings
from gateway.store import ApiKey, Team


@dataclass(frozen=True, slots=True)
class CachePlan:
    """A request that uses the cache always stores its fresh answer; `read` says whether it may
    also be answered from the cache or by an identical request in flight (not with no-cache)."""

    key: str
    scope: str
    read: bool


def directives(headers: Mapping[str, str]) -> set[str]:
    """The request's cache directives, lower-cased (`no-cache`, `no-store`, ...)."""
    found = set()
    for name in ("Cache-Control", "Pragma"):
        for value in headers.get(name, "").split(","):
            directive = value.split("=", 1)[0].strip().lower()
            if directive:
                found.add(directive)
    return found


def scope_of(settings: Settings, key: ApiKey, team: Team) -> str:
    if settings.cache_scope == "global":
        return "global"
    if settings.cache_scope == "key":
        return f"key:{key.id}"
    return f"team:{team.id}"


def caching_allowed(settings: Settings, team: Team, asked: set[str]) -> bool:
    return (
        settings.cache_enabled
        and team.name not in settings.cache_disabled_teams
        and "no-store" not in asked
    )
