"""Settings as a user meets them through the `gateway` command, run as a process from a
directory that has nothing of the repository: the shipped files found, a config file read (the
environment winning), and a setting that does not validate said in one line."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gateway.settings import SHIPPED_PRICES, Settings
from gateway.store.migrations import MIGRATIONS_DIR, all_migrations

# Runs `gateway` processes on SQLite files of their own: not again on PostgreSQL.
pytestmark = pytest.mark.one_pass


def run_gateway(cwd: Path, *args: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=cwd,
        env={**env, **env_vars},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_shipped_files_are_found_from_any_directory(tmp_path: Path) -> None:
    assert SHIPPED_PRICES.is_absolute() and SHIPPED_PRICES.is_file()
    assert MIGRATIONS_DIR.is_absolute() and all_migrations()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    migrated = run_gateway(elsewhere, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "applied: 0001_teams_and_keys.sql" in migrated.stdout
    assert (elsewhere / "data" / "gateway.db").is_file()  # the data dir is the one relative default
    prices = run_gateway(elsewhere, "prices")
    assert prices.returncode == 0, prices.stderr
    assert str(SHIPPED_PRICES) in prices.stdout and "gpt-image-2" in prices.stdout


def test_a_config_file_in_the_working_directory_is_read_and_the_environment_wins(
    tmp_path: Path,
) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "gateway.toml").write_text('port = 9001\nlog_level = "DEBUG"\n')
    shown = run_gateway(
        tmp_path, "config", GATEWAY_LOG_LEVEL="WARNING", GATEWAY_ADMIN_TOKEN="hunter2-secret"
    )
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert f"# config file: read from {tmp_path / 'config' / 'gateway.toml'}" in lines[0]
    assert "GATEWAY_PORT=9001  # file" in lines
    assert "GATEWAY_LOG_LEVEL=WARNING  # env" in lines
    assert "GATEWAY_HOST=127.0.0.1  # default" in lines
    assert "GATEWAY_ADMIN_TOKEN=(set)  # env" in lines
    assert "hunter2" not in shown.stdout
    assert f"# data dir: {tmp_path / 'data'} (does not exist yet)" in lines
    # `--example` prints the file a user starts from: it loads, and sets what it lists.
    example = run_gateway(tmp_path, "config", "--example")
    assert tomllib.loads(example.stdout)["port"] == 8080


def test_a_setting_that_does_not_validate_is_one_line_naming_it(tmp_path: Path) -> None:
    result = run_gateway(tmp_path, "prices", GATEWAY_PORT="eighty")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: setting GATEWAY_PORT: Input should be a valid integer, unable to parse string"
        " as an integer (got 'eighty')"
    ]
    (tmp_path / "bad.toml").write_text('cache_scope = "everyone"\n')
    result = run_gateway(tmp_path, "prices", GATEWAY_CONFIG=str(tmp_path / "bad.toml"))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: setting cache_scope in {tmp_path / 'bad.toml'}: ")
    assert "'everyone'" in line


def test_the_cache_store_is_a_directory_or_an_object_store(tmp_path: Path) -> None:
    result = run_gateway(tmp_path, "prices", GATEWAY_CACHE_STORE="ftp://host/cache")
    assert result.returncode == 2
    assert "GATEWAY_CACHE_STORE" in result.stderr and "s3://bucket/prefix" in result.stderr
    shared = Settings(cache_store=tmp_path / "shared", data_dir=tmp_path / "data")
    assert shared.cache_dir == tmp_path / "shared" and shared.cache_shared
    assert shared.cache_object_store is None
    s3 = Settings(cache_store="s3://bucket/pre", data_dir=tmp_path / "data")
    assert s3.cache_object_store == "s3://bucket/pre" and not s3.cache_shared
    assert s3.cache_dir == tmp_path / "data" / "cache"  # partial writes only
    assert Settings(data_dir=tmp_path / "data").cache_dir == tmp_path / "data" / "cache"
