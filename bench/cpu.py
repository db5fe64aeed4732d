"""CPU per proxied request, this revision beside an older one, measured in one run.

Both gateways run with their defaults (cache and accounting on; the key's team has a budget and
rate limits, so every accounting step runs) against one simulator answering at once. Each batch
sends N unique generations (every one a cache miss, stored in the cache) at a given concurrency,
to one gateway and then the other, in alternating rounds; the CPU seconds each gateway process
spent (user + system, from /proc) over its batches, divided by its requests, is its CPU per
request. Sequential requests also give the latency each gateway adds over the simulator alone.

Run: .venv/bin/python bench/cpu.py [--rev REV] [--n 1000] [--concurrency 1 16] [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from accounting import shipped, worktree
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
from latency import REQUEST_TIMEOUT

# The revision before issue 12's work: the baseline its CPU targets were measured on.
BASELINE_REV = "15d1b97"
LIMITS = ("--budget-usd", "1000000", "--budget-period", "month", "--rpm", "1000000")


def start_gateway(
    name: str, tmp: Path, sim_port: int, cwd: Path, extra: dict[str, str]
) -> tuple[Server, str]:
    port = free_port()
    env = clean_env(
        **extra,
        GATEWAY_HOST=HOST,
        GATEWAY_PORT=str(port),
        GATEWAY_UPSTREAM_URL=f"http://{HOST}:{sim_port}/v1",
        GATEWAY_DATA_DIR=str(tmp / name),
        GATEWAY_PRICES=str(shipped(cwd, "prices.toml")),
        GATEWAY_LOG_LEVEL="WARNING",
    )
    key = create_key(env, team_args=(*LIMITS, "--ipm", "1000000"), cwd=cwd)
    server = start_server(name, gateway_command("serve"), port, env, tmp, cwd=cwd)
    wait_ready(server, "/healthz")
    return server, key


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def unique_generation() -> bytes:
    prompt = f"a lighthouse at dawn, take {uuid.uuid4().hex}"
    return json.dumps({"model": "gpt-image-1", "prompt": prompt, "quality": "low"}).encode()


async def batch(
    session: aiohttp.ClientSession, url: str, key: str, n: int, concurrency: int
) -> list[float]:
    """Send `n` unique generations, `concurrency` at a time; the seconds each took."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    bodies = [unique_generation() for _ in range(n)]
    took: list[float] = []

    async def one(body: bytes) -> None:
        start = time.perf_counter()
        async with session.post(url, data=body, headers=headers) as resp:
            data = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{url} answered {resp.status}: {data[:300]!r}")
            if resp.headers.get("x-gateway-cache", "miss") not in ("miss", "bypass"):
                raise RuntimeError(f"expected a miss, got {resp.headers['x-gateway-cache']}")
        took.append(time.perf_counter() - start)

    async def worker(mine: list[bytes]) -> None:
        for body in mine:
            await one(body)

    await asyncio.gather(*(worker(bodies[i::concurrency]) for i in range(concurrency)))
    return took


async def direct_latency(session: aiohttp.ClientSession, url: str, n: int) -> list[float]:
    took = []
    for _ in range(n):
        start = time.perf_counter()
        async with session.post(url, data=unique_generation()) as resp:
            await resp.read()
        took.append(time.perf_counter() - start)
    return took


async def measure(
    gateways: dict[str, tuple[Server, str]],
    sim: Server,
    n: int,
    concurrencies: Sequence[int],
    rounds: int,
) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=max(concurrencies) * 2)
    results: dict[str, Any] = {}
    async with aiohttp.ClientSession(connector=connector, timeout=REQUEST_TIMEOUT) as session:
        for server, key in gateways.values():  # warm-up: imports, connections, the store
            await batch(session, f"{server.base_url}/v1/images/generations", key, 100, 4)
        for concurrency in concurrencies:
            cpu = dict.fromkeys(gateways, 0.0)
            latencies: dict[str, list[float]] = {name: [] for name in gateways}
            latencies["direct"] = []
            per_round = max(1, n // rounds)
            for _ in range(rounds):
                for name, (server, key) in gateways.items():
                    before = cpu_seconds(server.pid)
                    url = f"{server.base_url}/v1/images/generations"
                    latencies[name] += await batch(session, url, key, per_round, concurrency)
                    cpu[name] += cpu_seconds(server.pid) - before
                if concurrency == 1:
                    url = f"{sim.base_url}/v1/images/generations"
                    latencies["direct"] += await direct_latency(session, url, per_round // 4)
            done = per_round * rounds
            results[f"c{concurrency}"] = {
                "requests_each": done,
                "cpu_ms_per_request": {k: round(v / done * 1000, 3) for k, v in cpu.items()},
                "latency_ms": {k: summary_ms(v) for k, v in latencies.items() if v},
            }
    return results


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rev", default=BASELINE_REV, help="the older revision to compare")
    parser.add_argument("--n", type=int, default=1000, help="requests per gateway and level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rounds", type=int, default=4, help="alternations per level")
    parser.add_argument(
        "--cache-off", action="store_true", help="both gateways with the cache off (to compare)"
    )
    ns = parser.parse_args(argv)
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="gw-cpu-") as tmp_name, worktree(ns.rev) as old:
        tmp = Path(tmp_name)
        try:
            sim = start_simulator(tmp)
            servers.append(sim)
            sim_port = sim.port
            extra = {"GATEWAY_CACHE_ENABLED": "false"} if ns.cache_off else {}
            before = start_gateway("before", tmp, sim_port, old, extra)
            servers.append(before[0])
            now = start_gateway("now", tmp, sim_port, ROOT, extra)
            servers.append(now[0])
            gateways = {"before": before, "now": now}
            results = asyncio.run(measure(gateways, sim, ns.n, ns.concurrency, ns.rounds))
            sim_cpu = cpu_seconds(sim.pid)
        finally:
            for server in reversed(servers):
                stop_server(server)
    result = {
        "rev": ns.rev,
        "cache": not ns.cache_off,
        "levels": results,
        "environment": environment(),
    }
    cache = "off" if ns.cache_off else "on"
    print(f"CPU per proxied miss (cache {cache}), before = {ns.rev}, now = the working tree")
    for level, data in results.items():
        cpu = data["cpu_ms_per_request"]
        lat = data["latency_ms"]
        ratio = cpu["now"] / cpu["before"] if cpu["before"] else float("nan")
        print(
            f"  {level:>4}: before {cpu['before']:.3f} ms, now {cpu['now']:.3f} ms CPU/request"
            f" (now/before {ratio:.2f}); p50 latency before {lat['before']['p50']:.3f} ms,"
            f" now {lat['now']['p50']:.3f} ms"
            + (f", simulator alone {lat['direct']['p50']:.3f} ms" if "direct" in lat else "")
        )
    print(f"  (the simulator used {sim_cpu:.1f} s of CPU in all)")
    write_result("cpu", result)
    return result


if __name__ == "__main__":
    main()
