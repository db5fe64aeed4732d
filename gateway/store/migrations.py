"""Numbered SQL files: `migrations/` at the top of the repository, shipped as package data in
the package gateway.migrations.

`0001_teams_and_keys.sql` is version `0001`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

# `migrations/` at the top of the repository, installed as the package gateway.migrations.
MIGRATIONS_DIR = Path(str(resources.files("gateway.migrations")))
_NAME = re.compile(r"^(?P<version>\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str


def all_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration file, in version order. A file that is not `NNNN_name.sql` is an error."""
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise ValueError(f"migration file {path.name!r} is not named NNNN_name.sql")
        migrations.append(Migration(match["version"], path.name, path.read_text("utf-8")))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migration files share a version in {directory}")
    return migrations


def pending_migrations(directory: Path, applied: set[str]) -> list[Migration]:
    return [m for m in all_migrations(directory) if m.version not in applied]
