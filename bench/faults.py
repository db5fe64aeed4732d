"""Faults, measured: a real `gateway serve` through a full data disk, a stopped PostgreSQL and a
hung Redis. For each: requests tried, answers by status, answered requests without a ledger row
(rows lost), gateway 500s, and the time from the fault's end to the first answer again. Then
`--streams` streams open at once through the default upstream pool: their wait for a first event
and the most requests seen waiting for a pooled connection.

    .venv/bin/python bench/faults.py [--n 40] [--streams 1000]

Needs root for the tmpfs of the full disk, and the throwaway PostgreSQL and redis-server the
tests use (installed by `make test`). Only loopback traffic; every loop bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    clean_env,
    create_key,
    free_port,
    gateway_command,
    start_server,
    start_simulator,
    stop_server,
    wait_ready,
    write_result,
)
from tests.postgres_server import PostgresServer
from tests.redis_server import RedisServer


def ask(url: str, key: str, prompt: str) -> tuple[int, str, float]:
    """One generation: (status, the gateway's request id, seconds)."""
    body = json.dumps({"model": "gpt-image-1.5", "prompt": prompt, "quality": "low"}).encode()
    request = urllib.request.Request(
        url + "/v1/images/generations",
        data=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return (
                response.status,
                response.headers["x-gateway-request-id"],
                time.monotonic() - started,
            )
    except urllib.error.HTTPError as failed:
        rid = failed.headers.get("x-gateway-request-id", "")
        return failed.code, rid, time.monotonic() - started


def until_answered(url: str, key: str, limit_s: float = 60.0) -> float:
    """Seconds until a request is answered 200 again (asked every 50 ms)."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        if ask(url, key, f"recover {time.monotonic()}")[0] == 200:
            return time.monotonic() - started
        time.sleep(0.05)
    return float("inf")


def gateway(tmp: Path, sim_url: str, **env: str) -> tuple[Any, str]:
    port = free_port()
    settings = clean_env(**{
        "GATEWAY_PORT": str(port), "GATEWAY_UPSTREAM_URL": sim_url,
        "GATEWAY_UPSTREAM_API_KEY": "sk-bench", "GATEWAY_CACHE_ENABLED": "false",
        "GATEWAY_DATABASE_TIMEOUT_S": "1", **env,
    })  # fmt: skip
    key = create_key(settings)
    server = start_server("gateway", gateway_command("serve"), port, settings, tmp)
    wait_ready(server, "/healthz")
    return server, key


def run(
    name: str, url: str, key: str, n: int, fault: Callable[[], None], cure: Callable[[], None]
) -> dict[str, Any]:
    before = [ask(url, key, f"{name} before {i}") for i in range(n)]
    fault()
    during = [ask(url, key, f"{name} during {i}") for i in range(n)]
    cure()
    recovered = until_answered(url, key)
    after = [ask(url, key, f"{name} after {i}") for i in range(n)]
    answers = before + during + after
    return {
        "fault": name,
        "tried": len(answers),
        "during": dict(Counter(status for status, _, _ in during)),
        "during_max_s": round(max(s for _, _, s in during), 3),
        "errors_500": sum(1 for status, _, _ in answers if status == 500),
        "recover_s": round(recovered, 3),
        "answered_ids": [rid for status, rid, _ in answers if status == 200],
    }


def rows_lost(result: dict[str, Any], ledger_ids: set[str]) -> dict[str, Any]:
    answered = result.pop("answered_ids")
    result["rows_lost"] = sum(1 for rid in answered if rid not in ledger_ids)
    return result


def sqlite_ledger_ids(data: Path) -> set[str]:
    with sqlite3.connect(data / "gateway.db") as db:
        return {row[0] for row in db.execute("SELECT request_id FROM ledger")}


def full_disk(tmp: Path, sim_url: str, n: int) -> dict[str, Any]:
    mount = tmp / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    try:
        data = mount / "data"
        server, key = gateway(
            tmp, sim_url, GATEWAY_DATA_DIR=str(data), GATEWAY_JOURNAL_DIR=str(tmp / "journal")
        )
        filler = mount / "filler"

        def fill() -> None:
            with filler.open("wb") as handle:
                try:
                    while True:
                        handle.write(b"\0" * 65536)
                        handle.flush()
                except OSError:
                    pass

        try:
            result = run("full data disk (SQLite)", server.base_url, key, n, fill, filler.unlink)
            time.sleep(11)  # one housekeeping round: the journal drains
        finally:
            stop_server(server)
        return rows_lost(result, sqlite_ledger_ids(data))
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def stopped_postgres(tmp: Path, sim_url: str, n: int) -> dict[str, Any]:
    postgres = PostgresServer()
    postgres.start()
    try:
        url = asyncio.run(postgres.new_database())
        server, key = gateway(tmp, sim_url, GATEWAY_DATA_DIR=str(tmp / "pg"),
                              GATEWAY_DATABASE_URL=url)  # fmt: skip
        try:
            result = run("stopped PostgreSQL", server.base_url, key, n, postgres.pause,
                         postgres.resume)  # fmt: skip
            time.sleep(11)
        finally:
            stop_server(server)
        ids = set(asyncio.run(_ledger_ids(url)))
        return rows_lost(result, ids)
    finally:
        postgres.stop()


async def _ledger_ids(url: str) -> list[str]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return [row[0] for row in await conn.fetch("SELECT request_id FROM ledger")]
    finally:
        await conn.close()


def hung_redis(tmp: Path, sim_url: str, n: int) -> dict[str, Any]:
    (tmp / "redis").mkdir()
    redis = RedisServer(tmp / "redis")
    redis.start()
    assert redis.process is not None
    process = redis.process
    try:
        data = tmp / "r"
        server, key = gateway(
            tmp, sim_url, GATEWAY_DATA_DIR=str(data), GATEWAY_REDIS_URL=redis.url,
            GATEWAY_CACHE_ENABLED="true",
        )  # fmt: skip
        try:
            result = run("hung Redis (SIGSTOP)", server.base_url, key, n,
                         lambda: process.send_signal(signal.SIGSTOP),
                         lambda: process.send_signal(signal.SIGCONT))  # fmt: skip
        finally:
            stop_server(server)
        return rows_lost(result, sqlite_ledger_ids(data))
    finally:
        process.send_signal(signal.SIGCONT)
        redis.stop()


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=40, help="requests before, during and after")
    parser.add_argument("--streams", type=int, default=1000, help="streams open at once")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="gw-faults-") as name:
        tmp = Path(name)
        simulator = start_simulator(tmp)
        try:
            sim_url = simulator.base_url + "/v1"
            for scenario in (full_disk, stopped_postgres, hung_redis):
                if scenario is full_disk and os.geteuid() != 0:
                    print("full disk: skipped (mounting a tmpfs needs root)")
                    continue
                where = tmp / scenario.__name__
                where.mkdir()
                results.append(scenario(where, sim_url, args.n))
                print(json.dumps(results[-1]))
        finally:
            stop_server(simulator)
        (tmp / "streams").mkdir()
        results.append(open_streams(tmp / "streams", args.streams))
        print(json.dumps(results[-1]))
    data = {"results": results}
    print(f"results in {write_result('faults', data)}")
    return data


def open_streams(tmp: Path, n: int) -> dict[str, Any]:
    """`n` streams open at once through a gateway with the default upstream pool: how long each
    waited for its first event, and the most requests seen waiting for a pooled connection."""
    simulator = start_simulator(tmp, "--partial-interval-ms", "1500", "--image-px", "32")
    try:
        server, key = gateway(tmp, simulator.base_url + "/v1", GATEWAY_DATA_DIR=str(tmp / "s"))
        try:
            return asyncio.run(_streams(server.base_url, key, n))
        finally:
            stop_server(server)
    finally:
        stop_server(simulator)


async def _streams(url: str, key: str, n: int) -> dict[str, Any]:
    import aiohttp

    body = {"model": "gpt-image-1.5", "prompt": "s", "quality": "low", "stream": True,
            "partial_images": 2}  # fmt: skip
    waiting_seen = 0.0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> float:
            started = time.monotonic()
            async with session.post(
                url + "/v1/images/generations", json={**body, "prompt": f"s{i}"},
                headers={"Authorization": f"Bearer {key}"},
            ) as response:  # fmt: skip
                await response.content.readuntil(b"\n\n")
                first = time.monotonic() - started
                await response.read()
                return first

        async def watch() -> None:
            nonlocal waiting_seen
            while True:
                async with session.get(url + "/metrics") as response:
                    for line in (await response.text()).splitlines():
                        if line.startswith("gateway_upstream_pool_waiting "):
                            waiting_seen = max(waiting_seen, float(line.split()[1]))
                await asyncio.sleep(0.2)

        watcher = asyncio.create_task(watch())
        firsts = sorted(await asyncio.gather(*(one(i) for i in range(n))))
        watcher.cancel()
    return {
        "fault": f"{n} streams open at once (default pool)",
        "first_event_p50_s": round(firsts[len(firsts) // 2], 3),
        "first_event_max_s": round(firsts[-1], 3),
        "pool_waiting_max": waiting_seen,
    }


if __name__ == "__main__":
    main()
