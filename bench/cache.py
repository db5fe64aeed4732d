"""Cache hits, measured against a static file server serving the same body on the same machine.

The upstream is bench/fixed_server.py answering every generation with one ~2 MB JSON body (a
b64 image of random bytes, and `usage`); the gateway caches it on the first request. The static
server is aiohttp's FileResponse (sendfile, asyncio loop) serving the same bytes from a file.

  * throughput: `--concurrency` clients for `--seconds`, static and gateway alternately for
    `--rounds` rounds; requests/s and MB/s (median round), and the ratio;
  * latency: sequential requests alternating static / gateway; p50 and p99;
  * memory: the gateway's RSS while 100 concurrent clients are served hits, against its RSS idle;
  * miss path: the same request with `Cache-Control: no-store` (bypass) and `no-cache` (a miss
    that stores its 2 MB response), alternately: what storing adds.

Run: .venv/bin/python bench/cache.py [--body-mib 2 --seconds 5 --rounds 3 --concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    HOST,
    PYTHON,
    ROOT,
    Server,
    clean_env,
    create_key,
    free_port,
    gateway_command,
    start_server,
    stop_server,
    summary_ms,
    wait_ready,
    write_result,
)

REQUEST = {"model": "gpt-image-1", "prompt": "a red fox in the snow", "quality": "low"}
TIMEOUT = aiohttp.ClientTimeout(total=120)
MIB = 1024 * 1024


def fixed_body(mib: float) -> bytes:
    """An images response of about `mib` MiB (random bytes do not compress)."""
    image = base64.b64encode(os.urandom(int(mib * MIB * 3 / 4))).decode()
    usage = {
        "input_tokens": 6,
        "output_tokens": 272,
        "total_tokens": 278,
        "input_tokens_details": {"text_tokens": 6, "image_tokens": 0},
    }
    return json.dumps({"created": 1, "data": [{"b64_json": image}], "usage": usage}).encode()


class Target:
    def __init__(self, name: str, method: str, url: str, headers: dict[str, str], body: bytes):
        self.name, self.method, self.url, self.headers, self.body = name, method, url, headers, body

    async def fetch(self, session: aiohttp.ClientSession) -> int:
        async with session.request(
            self.method, self.url, data=self.body or None, headers=self.headers
        ) as resp:
            data = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{self.name}: {resp.status} {data[:200]!r}")
            return len(data)


async def throughput(target: Target, concurrency: int, seconds: float) -> dict[str, float]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session:
        done = 0
        received = 0
        stop = time.perf_counter() + seconds
        start = time.perf_counter()

        async def worker() -> None:
            nonlocal done, received
            while time.perf_counter() < stop:
                size = await target.fetch(session)  # not `received += await ...`: that loses
                received += size  # the other workers' additions made during the await
                done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {"rps": done / elapsed, "mb_s": received / elapsed / 1e6, "requests": done}


async def sequential(targets: list[Target], n: int) -> dict[str, dict[str, float]]:
    samples: dict[str, list[float]] = {t.name: [] for t in targets}
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        for i in range(n):
            for target in targets if i % 2 == 0 else reversed(targets):
                start = time.perf_counter()
                await target.fetch(session)
                samples[target.name].append(time.perf_counter() - start)
    return {name: summary_ms(values) for name, values in samples.items()}


async def memory_under_load(
    target: Target, pid: int, clients: int, requests: int
) -> dict[str, Any]:
    process = psutil.Process(pid)
    idle = process.memory_info().rss
    peak = idle
    running = True

    def sample() -> None:
        nonlocal peak
        while running:
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    connector = aiohttp.TCPConnector(limit=clients)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session:
            queue = iter(range(requests))

            async def worker() -> None:
                for _ in queue:
                    await target.fetch(session)

            await asyncio.gather(*(worker() for _ in range(clients)))
    finally:
        running = False
        sampler.join()
    return {
        "clients": clients,
        "requests": requests,
        "idle_rss_mib": round(idle / MIB, 1),
        "peak_rss_mib": round(peak / MIB, 1),
        "added_mib": round((peak - idle) / MIB, 1),
    }


def median_round(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {
        key: round(statistics.median(r[key] for r in rounds), 1)
        for key in ("rps", "mb_s", "requests")
    }


async def measure(
    static: Target, hit: Target, no_store: Target, no_cache: Target, pid: int, ns: Any
) -> dict[str, Any]:
    await throughput(static, ns.concurrency, 1.0)  # warm-up
    await throughput(hit, ns.concurrency, 1.0)
    rounds: dict[str, list[dict[str, float]]] = {"static": [], "gateway_hit": []}
    for i in range(ns.rounds):
        for target in (static, hit) if i % 2 == 0 else (hit, static):
            rounds[target.name].append(await throughput(target, ns.concurrency, ns.seconds))
    through = {name: median_round(values) for name, values in rounds.items()}
    through["ratio_static_over_gateway_rps"] = round(
        through["static"]["rps"] / through["gateway_hit"]["rps"], 2
    )
    return {
        "throughput": through,
        "throughput_rounds": rounds,
        "latency_ms": await sequential([static, hit], ns.latency_n),
        "memory": await memory_under_load(hit, pid, 100, ns.memory_requests),
        "miss_path_ms": await sequential([no_store, no_cache], ns.miss_n),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--body-mib", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency-n", type=int, default=300)
    parser.add_argument("--memory-requests", type=int, default=1000)
    parser.add_argument("--miss-n", type=int, default=100)
    ns = parser.parse_args(argv)

    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="gw-cache-") as tmp_name:
        tmp = Path(tmp_name)
        body = fixed_body(ns.body_mib)
        body_file = tmp / "body.json"
        body_file.write_bytes(body)
        script = str(ROOT / "bench" / "fixed_server.py")
        try:
            up_port, static_port, gw_port = free_port(), free_port(), free_port()
            for name, port, mode in (
                ("upstream", up_port, "upstream"),
                ("static", static_port, "static"),
            ):
                server = start_server(
                    name, [PYTHON, script, str(port), str(body_file), mode], port, clean_env(), tmp
                )
                servers.append(server)
                wait_ready(server, None)
            env = clean_env(
                GATEWAY_HOST=HOST,
                GATEWAY_PORT=str(gw_port),
                GATEWAY_UPSTREAM_URL=f"http://{HOST}:{up_port}/v1",
                GATEWAY_UPSTREAM_API_KEY="sk-bench-upstream",
                GATEWAY_DATA_DIR=str(tmp / "data"),
                GATEWAY_LOG_LEVEL="WARNING",
            )
            key = create_key(env)
            gateway = start_server("gateway", gateway_command("serve"), gw_port, env, tmp)
            servers.append(gateway)
            wait_ready(gateway, "/healthz")

            url = f"http://{HOST}:{gw_port}/v1/images/generations"
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            request = json.dumps(REQUEST).encode()
            static = Target("static", "GET", f"http://{HOST}:{static_port}/file", {}, b"")
            hit = Target("gateway_hit", "POST", url, headers, request)
            no_store = Target(
                "miss_no_store", "POST", url, headers | {"Cache-Control": "no-store"}, request
            )
            no_cache = Target(
                "miss_no_cache_stored",
                "POST",
                url,
                headers | {"Cache-Control": "no-cache"},
                request,
            )
            result = asyncio.run(measure(static, hit, no_store, no_cache, gateway.pid, ns))
            problems = gateway.log_problems()
        finally:
            for server in reversed(servers):
                stop_server(server)

    result["body_bytes"] = len(body)
    result["settings"] = vars(ns)
    result["gateway_log_problems"] = problems[:20]
    path = write_result("cache", result)
    through = result["throughput"]
    print(f"body {len(body) / MIB:.2f} MiB, {ns.concurrency} clients, median of {ns.rounds} rounds")
    for name in ("static", "gateway_hit"):
        t = through[name]
        print(f"  {name:12} {t['rps']:8.1f} req/s {t['mb_s']:8.1f} MB/s")
    print(f"  static / gateway: {through['ratio_static_over_gateway_rps']}x")
    for name, stats in result["latency_ms"].items():
        print(f"  latency {name:12} p50 {stats['p50']:.2f} ms  p99 {stats['p99']:.2f} ms")
    memory = result["memory"]
    print(
        f"  memory: idle {memory['idle_rss_mib']} MiB, peak {memory['peak_rss_mib']} MiB with"
        f" {memory['clients']} concurrent hits (+{memory['added_mib']} MiB)"
    )
    for name, stats in result["miss_path_ms"].items():
        print(f"  miss {name:22} p50 {stats['p50']:.2f} ms  p99 {stats['p99']:.2f} ms")
    print(f"written to {path}")
    return result


if __name__ == "__main__":
    main()
