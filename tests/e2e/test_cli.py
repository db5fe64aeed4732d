"""The `gateway` command, run as users run it: a subprocess with GATEWAY_* in its environment."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.admin import accounts
from gateway.app import create_app
from gateway.runtime.state import SERVICES
from gateway.settings import Settings
from tests.conftest import FakeUpstream
from tests.redis_server import RedisServer

# Starts the servers it tests itself (or needs no fixture's database): run once, not again on
# PostgreSQL.
pytestmark = pytest.mark.one_pass


def gateway(tmp_path: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_DATA_DIR"] = str(tmp_path / "data")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_migrate_then_teams_and_keys(tmp_path: Path) -> None:
    assert "applied: 0001_teams_and_keys.sql" in gateway(tmp_path, "migrate").stdout
    assert "up to date" in gateway(tmp_path, "migrate").stdout

    created = json.loads(
        gateway(tmp_path, "teams", "create", "design", "--budget-usd", "12.5", "--rpm", "30").stdout
    )
    assert created["budget_usd"] == "12.50" and created["rpm"] == 30

    out = gateway(tmp_path, "keys", "create", "--team", "design", "--name", "ci").stdout
    secret = out.strip().splitlines()[-1]
    key_id = out.split()[2]
    assert secret.startswith("sk-gw-") and key_id.startswith("key_")

    listing = gateway(tmp_path, "keys", "list", "--team", "design").stdout
    assert key_id in listing and secret not in listing

    assert "revoked" in gateway(tmp_path, "keys", "revoke", key_id).stdout
    shown = json.loads(gateway(tmp_path, "keys", "show", key_id).stdout)
    assert shown["revoked"] is True

    updated = json.loads(
        gateway(tmp_path, "teams", "update", "design", "--budget-usd", "none").stdout
    )
    assert updated["budget_usd"] is None and updated["rpm"] == 30


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("keys", "create", "--team", "ghost"), "No team named 'ghost'"),
        (("teams", "create", "bad name"), "name"),
        (("keys", "revoke", "key_missing"), "No key with id"),
    ],
)
def test_cli_errors_are_clear_and_nonzero(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = gateway(tmp_path, *args, check=False)
    assert result.returncode != 0
    assert message in result.stderr


def test_usage_and_prices_commands(tmp_path: Path) -> None:
    gateway(tmp_path, "teams", "create", "design")
    table = gateway(tmp_path, "usage", "--group-by", "model").stdout
    assert "TOTAL" in table and "COST_USD" in table
    report = json.loads(gateway(tmp_path, "usage", "--format", "json").stdout)
    assert report["total"]["cost_usd"] == "0.00" and report["group_by"] == "team"
    prices = gateway(tmp_path, "prices").stdout
    assert "version 2026-12-06" in prices and "gpt-image-1-mini" in prices
    # no server runs from this data dir: reload checks the file, then says so
    result = gateway(tmp_path, "prices", "reload", check=False)
    assert result.returncode == 1 and "is valid" in result.stderr
    bad = gateway(tmp_path, "usage", "--since", "yesterday", check=False)
    assert bad.returncode == 2 and "ISO 8601" in bad.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("teams", "list"), "no teams yet"),
        (("keys", "list"), "no keys yet"),
        (("keys", "list", "--team", "empty"), "no keys for team empty yet"),
        (("cache", "stats"), "entries: 0"),
        (("cache", "stats", "--json"), '"entries": 0'),
        (("usage",), "TOTAL"),
        (("usage", "--format", "json"), '"requests": 0'),
        (("usage", "--format", "csv"), "team,requests,refused"),
        (("cache", "verify"), ""),
        (("prices",), "gpt-image-2"),
    ],
)
def test_every_listing_works_on_an_empty_store(
    tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    if args[:2] != ("teams", "list"):  # a team, but no key, no request, no entry
        gateway(tmp_path, "teams", "create", "empty")
    else:
        gateway(tmp_path, "migrate")  # an empty store: not even a team
    result = gateway(tmp_path, *args)
    assert says in result.stdout
    assert "Traceback" not in result.stderr


def test_every_command_and_option_has_help() -> None:
    import argparse

    from gateway.cli import build_parser

    def walk(parser: argparse.ArgumentParser, where: str) -> list[str]:
        missing = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helped = {choice.dest for choice in action._choices_actions if choice.help}
                for name, sub in action.choices.items():
                    if name not in helped:
                        missing.append(f"{where} {name}")
                    missing += walk(sub, f"{where} {name}")
            elif not action.help and not isinstance(action, argparse._HelpAction):
                missing.append(f"{where} {'/'.join(action.option_strings) or action.dest}")
        return missing

    assert walk(build_parser(), "gateway") == []


def test_prices_fit_a_100_column_terminal_and_wide_shows_the_rest(tmp_path: Path) -> None:
    narrow = gateway(tmp_path, "prices").stdout
    assert max(len(line) for line in narrow.splitlines()) <= 100
    assert "gpt-image-2" in narrow and "--wide" in narrow
    wide = gateway(tmp_path, "prices", "--wide").stdout
    assert "standard:1024x1024=0.040" in wide and "SOURCE" in wide and "BATCH" in wide


def test_a_bad_value_is_one_readable_line(tmp_path: Path) -> None:
    result = gateway(tmp_path, "teams", "create", "t", "--budget-usd", "lots", check=False)
    assert result.returncode == 2
    assert result.stderr == "error: budget-usd: Input should be a valid decimal\n"


def test_keys_list_shows_spend_and_what_is_left(tmp_path: Path) -> None:
    gateway(tmp_path, "teams", "create", "t")
    gateway(tmp_path, "keys", "create", "--team", "t", "--budget-usd", "3")
    listing = gateway(tmp_path, "keys", "list").stdout
    header, row = listing.splitlines()[:2]
    assert "SPENT_USD" in header and "REMAINING_USD" in header
    assert "0.00" in row and "3.00" in row


@pytest.mark.parametrize(
    "args",
    [
        ("teams", "list"),
        ("keys", "list"),
        ("keys", "show", "key_x"),
        ("usage",),
        ("cache", "stats"),
    ],
)
def test_reading_a_store_that_does_not_exist_says_so_and_creates_nothing(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    result = gateway(tmp_path, *args, check=False)
    assert result.returncode == 3  # not found
    assert result.stderr.startswith("error: no gateway data at ")
    assert "GATEWAY_DATA_DIR" in result.stderr
    assert not (tmp_path / "data").exists()


async def test_a_key_revoked_from_the_command_line_is_refused_by_running_replicas_at_once(
    tmp_path: Path,
    aiohttp_client: Any,
    make_settings: Callable[..., Settings],
    fake_upstream: FakeUpstream,
    pg_url: str,
    redis_server: RedisServer,
) -> None:
    """On PostgreSQL a replica keeps keys a second; the command line's change is told over
    Redis like the admin API's, so the running replica drops the key at once."""
    settings = make_settings(
        upstream_url=fake_upstream.url, database_url=pg_url, redis_url=redis_server.url
    )
    replica = await aiohttp_client(create_app(settings))
    store = replica.app[SERVICES].store
    await accounts.create_team(store, accounts.TeamCreate(name="t"))
    issued = await accounts.create_key(store, accounts.KeyCreate(team="t"))
    body = {"model": "gpt-image-1.5", "prompt": "cli", "quality": "low"}
    headers = {"Authorization": f"Bearer {issued.secret}"}
    assert (await replica.post("/v1/images/generations", json=body, headers=headers)).status == 200
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {"GATEWAY_DATABASE_URL": pg_url, "GATEWAY_REDIS_URL": redis_server.url}
    revoked = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway", "keys", "revoke", issued.record.id],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert revoked.returncode == 0, revoked.stderr
    for _ in range(20):  # heard within a few hundred milliseconds, not the cache's second
        refused = await replica.post("/v1/images/generations", json=body, headers=headers)
        if refused.status == 401:
            break
        await asyncio.sleep(0.02)
    assert refused.status == 401


def test_config_shows_no_password_of_a_database_url(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_DATABASE_URL"] = "postgresql://gw:hunter2secret@db.example:5432/gateway"
    shown = subprocess.run(
        [sys.executable, "-m", "gateway", "config"],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "hunter2secret" not in shown.stdout
    assert "postgresql://gw:***@db.example:5432/gateway" in shown.stdout


@pytest.mark.parametrize(
    ("damage", "env", "named"),
    [
        ("garbage", {}, "gateway.db"),
        ("zeroed header", {}, "gateway.db"),
        ("half truncated", {}, "gateway.db"),
        (None, {"GATEWAY_DATABASE_URL": "postgresql://gw:pw-secret@127.0.0.1:1/gw"}, "127.0.0.1:1"),
        (None, {"GATEWAY_REDIS_URL": "redis://:pw-secret@127.0.0.1:1/0"}, "127.0.0.1:1"),
    ],
)
def test_a_start_that_cannot_open_its_store_says_why_in_one_line(
    tmp_path: Path, damage: str | None, env: dict[str, str], named: str
) -> None:
    data = tmp_path / "data"
    if damage is not None:
        gateway(tmp_path, "migrate")
        gateway(tmp_path, "teams", "create", "t")
        database = data / "gateway.db"
        for leftover in data.glob("gateway.db-*"):
            leftover.unlink()
        size = database.stat().st_size
        if damage == "garbage":
            database.write_bytes(os.urandom(size))
        elif damage == "zeroed header":
            with database.open("r+b") as handle:
                handle.write(bytes(100))
        else:
            os.truncate(database, size // 2)
    started = time.monotonic()
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    run_env |= {"GATEWAY_DATA_DIR": str(data), "GATEWAY_PORT": "0", **env}
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve"],
        env=run_env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert time.monotonic() - started < 10
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("gateway cannot start: ") and named in lines[0]
    assert "pw-secret" not in result.stderr


def test_scripts_can_tell_each_outcome_apart_and_read_json(tmp_path: Path) -> None:
    gateway(tmp_path, "teams", "create", "t")
    created = gateway(tmp_path, "keys", "create", "--team", "t").stdout
    key = created.split("key id: ")[1].split()[0]
    assert gateway(tmp_path, "teams", "show", "nope", check=False).returncode == 3
    assert gateway(tmp_path, "keys", "show", "key_nope", check=False).returncode == 3
    assert gateway(tmp_path, "teams", "create", "t", check=False).returncode == 4  # taken
    assert (
        gateway(tmp_path, "teams", "update", "t", "--budget-usd", "-1", check=False).returncode == 2
    )
    assert gateway(tmp_path, "usage", "--key", "key_nope", check=False).returncode == 2
    gateway(tmp_path, "keys", "revoke", key)
    assert gateway(tmp_path, "keys", "rotate", key, check=False).returncode == 4  # revoked
    teams = json.loads(gateway(tmp_path, "teams", "list", "--json").stdout)["data"]
    assert [t["name"] for t in teams] == ["t"] and teams[0]["budget_usd"] is None
    keys = json.loads(gateway(tmp_path, "keys", "list", "--json").stdout)["data"]
    assert [k["revoked"] for k in keys] == [True]
    table = gateway(tmp_path, "keys", "list").stdout
    assert "no budget" in table and "revoked" in table and "True" not in table
    assert "3 not found" in gateway(tmp_path, "--help").stdout
    prices = json.loads(gateway(tmp_path, "prices", "--json").stdout)
    assert {"gpt-image-2", "gpt-5"} <= {m["model"] for m in prices["models"]}
