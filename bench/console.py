"""How fast the console's pages render with a big ledger.

Seeds a fresh data directory with --rows ledger rows (default 100,000) over 20 teams, 60 keys,
4 models and the last 30 days (written through the store's own `record`, so spend counters are
what they would be), starts `gateway serve` on it, signs in, and requests each page --n times
one after another: median and p90 of the time to the whole page, and the gateway's CPU per page
(from /proc).

With --store postgres the same runs on a throwaway PostgreSQL server (the tests' own, started
in a temporary directory) instead of the embedded SQLite.

Run: .venv/bin/python bench/console.py [--rows 100000] [--n 30] [--store sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psutil
from common import (
    HOST,
    clean_env,
    free_port,
    gateway_command,
    start_server,
    stop_server,
    summary_ms,
    wait_ready,
    write_result,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from gateway.accounting.periods import Periods
from gateway.store import open_store
from gateway.store.base import LedgerRow
from tests.postgres_server import PostgresServer

TOKEN = "bench-admin-token-0123456789"
PAGES = ["/console/", "/console/teams", "/console/keys", "/console/usage?group_by=day",
         "/console/images", "/console/prices", "/console/cache"]  # fmt: skip
MODELS = ["gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5", "dall-e-3"]
OUTCOMES = ["ok"] * 90 + ["refused_budget"] * 5 + ["refused_rate"] * 3 + ["invalid"] * 2


async def seed(database_url: str, rows: int) -> None:
    store = open_store(database_url)
    await store.connect()
    await store.migrate()
    keys: list[tuple[int, str]] = []
    for t in range(20):
        team = await store.create_team(f"team-{t:02d}", budget_nanos=500 * 10**9,
                                       budget_period="month")  # fmt: skip
        for k in range(3):
            key_id = f"key_{t:02d}_{k}"
            key_hash = f"{t:02d}{k}".ljust(64, "0")
            await store.create_key(key_id=key_id, team_id=team.id, name=None,
                                   key_hash=key_hash, prefix="sk-gw-bench")  # fmt: skip
            keys.append((team.id, key_id))
    rng = random.Random(0)
    now = dt.datetime.now(dt.UTC)
    batch = []
    for i in range(rows):
        at = now - dt.timedelta(seconds=rng.uniform(0, 30 * 86400))
        periods = Periods.at(at)
        team_id, key_id = rng.choice(keys)
        outcome = rng.choice(OUTCOMES)
        cost = rng.randrange(5, 200) * 10**6 if outcome == "ok" else 0
        cache = "hit" if outcome == "ok" and rng.random() < 0.2 else "miss"
        batch.append(LedgerRow(
            request_id=f"req_bench_{i}", created_at=at.isoformat(timespec="milliseconds"),
            day=periods.day, week=periods.week, month=periods.month, key_id=key_id,
            team_id=team_id, endpoint="generations", model=rng.choice(MODELS), size="1024x1024",
            quality="low", n=1, stream=False, status=200 if outcome == "ok" else 429,
            outcome=outcome, cache_status=cache, text_input_tokens=12,
            cached_text_input_tokens=0, image_input_tokens=0, cached_image_input_tokens=0,
            image_output_tokens=272, text_output_tokens=0, images=1 if outcome == "ok" else 0,
            estimate_nanos=cost, cost_nanos=0 if cache == "hit" else cost,
            saved_nanos=cost if cache == "hit" else 0, latency_ms=10.0,
            upstream_request_id=None, price_version="bench", reservation_id=None,
        ))  # fmt: skip
        if len(batch) == 1000:
            await asyncio.gather(*(store.record(row) for row in batch))
            batch.clear()
    await asyncio.gather(*(store.record(row) for row in batch))
    await store.close()


async def measure(base: str, pid: int, n: int) -> dict[str, dict[str, float]]:
    process = psutil.Process(pid)
    results = {}
    # unsafe: keep cookies of an IP-address host (127.0.0.1) too
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.post(f"{base}/console/login", data={"token": TOKEN}) as response:
            assert response.url.path == "/console/", "not signed in"
        for page in PAGES:
            async with session.get(base + page) as response:  # warm: first render compiles
                assert response.status == 200 and not response.history, (page, response.status)
                await response.read()
            times = []
            cpu_before = sum(process.cpu_times()[:2])
            for _ in range(n):
                started = time.perf_counter()
                async with session.get(base + page) as response:
                    await response.read()
                times.append(time.perf_counter() - started)
            cpu = (sum(process.cpu_times()[:2]) - cpu_before) / n
            results[page] = {**summary_ms(times), "cpu_ms": round(cpu * 1000, 2)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    postgres = PostgresServer() if args.store == "postgres" else None
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        try:
            if postgres is not None:
                postgres.start()
                database_url = asyncio.run(postgres.new_database())
            else:
                database_url = f"sqlite:///{data / 'gateway.db'}"
            started = time.monotonic()
            asyncio.run(seed(database_url, args.rows))
            print(f"seeded {args.rows} ledger rows in {time.monotonic() - started:.0f} s")
            port = free_port()
            env = clean_env(GATEWAY_DATA_DIR=str(data), GATEWAY_ADMIN_TOKEN=TOKEN,
                            GATEWAY_PORT=str(port), GATEWAY_HOST=HOST,
                            GATEWAY_DATABASE_URL=database_url)  # fmt: skip
            server = start_server("gateway", gateway_command("serve"), port, env, Path(tmp))
            try:
                wait_ready(server, "/healthz")
                results = asyncio.run(measure(server.base_url, server.pid, args.n))
            finally:
                stop_server(server)
        finally:
            if postgres is not None:
                postgres.stop()
    print(f"{'page':<30} {'p50 ms':>8} {'p90 ms':>8} {'CPU ms':>8}")
    for page, figures in results.items():
        print(f"{page:<30} {figures['p50']:>8.1f} {figures['p90']:>8.1f} {figures['cpu_ms']:>8.1f}")
    path = write_result(f"console-{args.store}", {"rows": args.rows, "n": args.n, "pages": results})
    print(f"written to {path}")


if __name__ == "__main__":
    main()
