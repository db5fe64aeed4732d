"""Several replicas on PostgreSQL and Redis, against the embedded default, measured in one run.

1. Latency and CPU: one gateway on SQLite (the default) and one on PostgreSQL + Redis, both with
   their defaults, against one simulator answering at once; N unique generations each, sent one
   at a time in alternating rounds. p50 latency each (and the simulator alone), and CPU seconds
   per request of each gateway process (from /proc). PostgreSQL and Redis run on this machine
   too: their CPU per request is reported beside the gateway's.
2. Throughput: three replicas on PostgreSQL + Redis against one, the same concurrent load of
   unique generations spread over them round-robin, requests per second.
3. The 60-way budget race, repeated: each run a fresh team whose budget pays for five
   estimates, 60 concurrent requests spread over the three replicas; what the team spent minus
   its budget (positive: overspend), and how many were admitted.

Run: .venv/bin/python bench/replicas.py [--n 1000] [--throughput-n 2000] [--races 20]
(PostgreSQL's server binaries and redis-server must be installed: `make test` does that.)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil
from common import (
    HOST,
    ROOT,
    Server,
    clean_env,
    create_key,
    environment,
    free_port,
    gateway_command,
    start_server,
    start_simulator,
    stop_server,
    summary_ms,
    wait_ready,
    write_result,
)
from cpu import unique_generation
from latency import REQUEST_TIMEOUT

sys.path.insert(0, str(ROOT))
from tests.postgres_server import PostgresServer  # the throwaway servers the tests use
from tests.redis_server import RedisServer

LIMITS = ("--budget-usd", "1000000", "--budget-period", "month", "--rpm", "1000000")


def cpu_seconds(pid: int) -> float:
    """CPU of a process and its children: the live ones, and those it has reaped (a PostgreSQL
    server's backends come and go)."""
    process = psutil.Process(pid)
    times = process.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in process.children(recursive=True):
        try:
            child_times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += child_times.user + child_times.system
    return total


def start_gateway(name: str, tmp: Path, sim: Server, extra: dict[str, str]) -> Server:
    port = free_port()
    env = clean_env(
        **extra,
        GATEWAY_HOST=HOST,
        GATEWAY_PORT=str(port),
        GATEWAY_UPSTREAM_URL=f"{sim.base_url}/v1",
        GATEWAY_DATA_DIR=str(tmp / name),
        GATEWAY_LOG_LEVEL="WARNING",
    )
    server = start_server(name, gateway_command("serve"), port, env, tmp)
    wait_ready(server, "/healthz")
    return server


def cli_env(tmp: Path, extra: dict[str, str]) -> dict[str, str]:
    return clean_env(**extra, GATEWAY_DATA_DIR=str(tmp / "cli"))


async def post(session: aiohttp.ClientSession, url: str, key: str, body: bytes) -> int:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with session.post(url, data=body, headers=headers) as response:
        await response.read()
        return response.status


async def latency_and_cpu(
    gateways: dict[str, tuple[Server, str]],
    sim: Server,
    n: int,
    rounds: int,
    servers_pid: list[int],
) -> dict[str, Any]:
    took: dict[str, list[float]] = {name: [] for name in [*gateways, "direct"]}
    cpu = dict.fromkeys(gateways, 0.0)
    backends = 0.0
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
        for server, key in gateways.values():  # warm-up
            for _ in range(50):
                await post(session, f"{server.base_url}/v1/images/generations", key,
                           unique_generation())  # fmt: skip
        per_round = max(1, n // rounds)
        for _ in range(rounds):
            for name, (server, key) in gateways.items():
                before = cpu_seconds(server.pid)
                backends_before = sum(cpu_seconds(pid) for pid in servers_pid)
                for _ in range(per_round):
                    body = unique_generation()
                    start = time.perf_counter()
                    status = await post(session, f"{server.base_url}/v1/images/generations",
                                        key, body)  # fmt: skip
                    took[name].append(time.perf_counter() - start)
                    if status != 200:
                        raise RuntimeError(f"{name} answered {status}")
                cpu[name] += cpu_seconds(server.pid) - before
                if name == "postgres+redis":
                    backends += sum(cpu_seconds(pid) for pid in servers_pid) - backends_before
            for _ in range(per_round // 4):
                start = time.perf_counter()
                async with session.post(f"{sim.base_url}/v1/images/generations",
                                        data=unique_generation()) as response:  # fmt: skip
                    await response.read()
                took["direct"].append(time.perf_counter() - start)
    done = per_round * rounds
    return {
        "requests_each": done,
        "latency_ms": {name: summary_ms(values) for name, values in took.items()},
        "gateway_cpu_ms_per_request": {k: round(v / done * 1000, 3) for k, v in cpu.items()},
        "postgres_and_redis_cpu_ms_per_request": round(backends / done * 1000, 3),
    }


async def throughput(urls: Sequence[str], key: str, n: int, concurrency: int) -> float:
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(connector=connector, timeout=REQUEST_TIMEOUT) as session:
        queue = list(range(n))

        async def worker(index: int) -> None:
            while queue:
                item = queue.pop()
                url = urls[(item + index) % len(urls)]
                if await post(session, url, key, unique_generation()) != 200:
                    raise RuntimeError("a throughput request failed")

        start = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        return n / (time.perf_counter() - start)


async def budget_races(
    urls: Sequence[str], database: str, env: dict[str, str], races: int
) -> list[dict[str, Any]]:
    from common import run_cli

    # One request's estimate, from a probe's ledger row.
    probe_key = create_key(env, team="probe")
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
        await post(session, f"{urls[0]}/v1/images/generations", probe_key, unique_generation())
    conn = await asyncpg.connect(database)
    results = []
    try:
        estimate = await conn.fetchval("SELECT MAX(estimate_nanos) FROM ledger")
        for race in range(races):
            team = f"race{race}"
            budget_usd = f"{estimate * 5 / 1e9:.9f}"
            run_cli(["teams", "create", team, "--budget-usd", budget_usd], env)
            key = run_cli(["keys", "create", "--team", team], env).strip().splitlines()[-1]
            async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session:
                statuses = await asyncio.gather(*(
                    post(session, f"{urls[i % len(urls)]}/v1/images/generations", key,
                         unique_generation())
                    for i in range(60)
                ))  # fmt: skip
            await asyncio.sleep(0.5)  # the last rows settle
            spent, budget = await conn.fetchrow(
                "SELECT COALESCE(SUM(l.cost_nanos), 0), t.budget_nanos FROM teams t"
                " LEFT JOIN ledger l ON l.team_id = t.id WHERE t.name = $1"
                " GROUP BY t.budget_nanos",
                team,
            )
            results.append({
                "admitted": statuses.count(200),
                "refused": statuses.count(429),
                "overspend_nanos": int(spent) - int(budget),
            })  # fmt: skip
    finally:
        await conn.close()
    return results


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000, help="sequential requests per gateway")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--throughput-n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--races", type=int, default=20)
    ns = parser.parse_args(argv)
    servers: list[Server] = []
    postgres = PostgresServer()
    with tempfile.TemporaryDirectory(prefix="gw-replicas-") as tmp_name:
        tmp = Path(tmp_name)
        redis = RedisServer(tmp)
        try:
            postgres.start()
            redis.start()
            database = asyncio.run(postgres.new_database())
            shared = {"GATEWAY_DATABASE_URL": database, "GATEWAY_REDIS_URL": redis.url}
            sim = start_simulator(tmp)
            servers.append(sim)
            embedded = start_gateway("sqlite", tmp, sim, {})
            servers.append(embedded)
            replicas = [start_gateway(f"replica{i}", tmp, sim, shared) for i in range(3)]
            servers += replicas
            sqlite_key = create_key(
                clean_env(GATEWAY_DATA_DIR=str(tmp / "sqlite")), team_args=LIMITS
            )
            env = cli_env(tmp, shared)
            shared_key = create_key(env, team_args=LIMITS)
            backend_pids = [redis.process.pid] if redis.process else []
            postmaster = (postgres.root / "data" / "postmaster.pid").read_text().split()[0]
            backend_pids.append(int(postmaster))
            gateways = {
                "sqlite": (embedded, sqlite_key),
                "postgres+redis": (replicas[0], shared_key),
            }
            first = asyncio.run(latency_and_cpu(gateways, sim, ns.n, ns.rounds, backend_pids))
            urls = [r.base_url + "/v1/images/generations" for r in replicas]
            one = asyncio.run(throughput(urls[:1], shared_key, ns.throughput_n, ns.concurrency))
            three = asyncio.run(throughput(urls, shared_key, ns.throughput_n, ns.concurrency))
            races = asyncio.run(
                budget_races([r.base_url for r in replicas], database, env, ns.races)
            )
        finally:
            for server in reversed(servers):
                stop_server(server)
            redis.stop()
            postgres.stop()
    result = {
        "latency_and_cpu": first,
        "throughput_rps": {"one_replica": round(one, 1), "three_replicas": round(three, 1)},
        "budget_races": races,
        "environment": environment(),
    }
    lat, cpu = first["latency_ms"], first["gateway_cpu_ms_per_request"]
    print(f"sequential, {first['requests_each']} unique generations each:")
    for name in ("sqlite", "postgres+redis"):
        print(f"  {name:>15}: p50 {lat[name]['p50']:.3f} ms, p99 {lat[name]['p99']:.3f} ms,"
              f" gateway CPU {cpu[name]:.3f} ms/request")  # fmt: skip
    print(f"  {'simulator alone':>15}: p50 {lat['direct']['p50']:.3f} ms")
    print(f"  PostgreSQL + Redis CPU: {first['postgres_and_redis_cpu_ms_per_request']:.3f}"
          " ms/request")  # fmt: skip
    print(f"throughput at concurrency {ns.concurrency}: one replica {one:.0f} req/s,"
          f" three replicas {three:.0f} req/s ({three / one:.2f}x)")  # fmt: skip
    overs = [race["overspend_nanos"] / 1e9 for race in races]  # for display only
    admitted = [race["admitted"] for race in races]
    print(f"budget races ({len(races)} x 60 requests over 3 replicas, budget = 5 estimates):"
          f" admitted {min(admitted)}-{max(admitted)}, spent minus budget"
          f" max {max(overs):+.6f} USD, min {min(overs):+.6f} USD")  # fmt: skip
    write_result("replicas", result)
    return result


if __name__ == "__main__":
    main()
