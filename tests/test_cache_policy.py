"""Who shares cache entries, and when a request may use the cache at all."""

from __future__ import annotations

from pathlib import Path

from gateway.cache.policy import caching_allowed, directives, scope_of
from gateway.settings import Settings
from tests.factories import KEY, TEAM


def test_directives_come_from_cache_control_and_pragma() -> None:
    headers = {"Cache-Control": "No-Cache, max-age=0", "Pragma": "no-store"}
    assert directives(headers) == {"no-cache", "max-age", "no-store"}
    assert directives({}) == set()


def test_entries_belong_to_the_team_by_default(tmp_path: Path) -> None:
    assert scope_of(Settings(data_dir=tmp_path), KEY, TEAM) == "team:1"
    assert scope_of(Settings(data_dir=tmp_path, cache_scope="key"), KEY, TEAM) == "key:key_1"
    assert scope_of(Settings(data_dir=tmp_path, cache_scope="global"), KEY, TEAM) == "global"


def test_no_store_a_disabled_team_or_a_cache_turned_off_bypass_it(tmp_path: Path) -> None:
    on = Settings(data_dir=tmp_path)
    assert caching_allowed(on, TEAM, set()) and caching_allowed(on, TEAM, {"no-cache"})
    assert not caching_allowed(on, TEAM, {"no-store"})
    assert not caching_allowed(Settings(data_dir=tmp_path, cache_enabled=False), TEAM, set())
    excluded = Settings(data_dir=tmp_path, cache_disabled_teams=[TEAM.name])
    assert not caching_allowed(excluded, TEAM, set())
