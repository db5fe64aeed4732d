"""Issue 27's table, measured in one run: this revision ("now") beside an older one ("before",
a git worktree; default b7f0090, the main the issue was measured on), with nginx as the
reference where it does the same job.

1. Misses: unique generations (each a cache miss, stored) against one simulator answering at
   once. CPU per request of each server from /proc (nginx: its master and worker, proxying to
   the simulator with keep-alive) at concurrency 1 and 16, in alternating rounds; p50 latency at
   concurrency 1 and what each adds over the simulator alone; throughput at concurrency 32, and
   "now" again with GATEWAY_WORKERS=2 (both workers' CPU counted).
2. Hits: one ~2.8 MB answer (bench/fixed_server.py upstream), then hits at concurrency 8 for
   --hit-seconds per round, alternating; nginx serves the same bytes as a static file (sendfile).
3. Streams: --streams streams open at once through the gateway, each carrying --events partial
   images one --interval-s apart (stamped by a ticker upstream, the events of all streams spread
   evenly) once every stream is open; each event's lateness (arrival minus stamp), and the
   gateway's RSS growth from before the streams opened to its peak.
4. Scaled mode: three replicas of each revision on one PostgreSQL + Redis (throwaway servers).
   Sequential unique generations to one replica, then round-robin over three: CPU per request
   of the gateways plus PostgreSQL (every backend) plus Redis, beside the SQLite figure of (1).

Run: .venv/bin/python bench/speed.py [--rev b7f0090] [--quick] [--only misses hits streams scaled]
(nginx, PostgreSQL's server binaries and redis-server must be installed: `make bench-deps`.)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from accounting import shipped, worktree
from aiohttp import web
from cache import Target, fixed_body
from cache import throughput as hit_throughput
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
    start_simulator,
    stop_server,
    summary_ms,
    wait_ready,
    write_result,
)
from cpu import unique_generation
from replicas import cpu_seconds as tree_cpu  # a process and its workers or backends

sys.path.insert(0, str(ROOT))
from tests.postgres_server import PostgresServer  # the throwaway servers the tests use
from tests.redis_server import RedisServer

BEFORE_REV = "b7f0090"  # the main issue 27 was measured on
LIMITS = ("--budget-usd", "1000000", "--budget-period", "month", "--rpm", "1000000")
TIMEOUT = aiohttp.ClientTimeout(total=300)
MIB = 1024 * 1024
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


# Processes and their CPU.


def gateway_env(name: str, tmp: Path, upstream: str, cwd: Path, **extra: str) -> dict[str, str]:
    return clean_env(
        GATEWAY_HOST=HOST,
        GATEWAY_PORT=str(free_port()),
        GATEWAY_UPSTREAM_URL=upstream,
        GATEWAY_DATA_DIR=str(tmp / name),
        GATEWAY_PRICES=str(shipped(cwd, "prices.toml")),
        GATEWAY_LOG_LEVEL="WARNING",
        **extra,
    )


def start_gateway(
    name: str, tmp: Path, upstream: str, cwd: Path, key: bool = True, **extra: str
) -> tuple[Server, str]:
    """A gateway of the tree at `cwd` (a key for a team with a budget and limits, unless told)."""
    env = gateway_env(name, tmp, upstream, cwd, **extra)
    secret = create_key(env, team_args=(*LIMITS, "--ipm", "1000000"), cwd=cwd) if key else ""
    server = start_server(name, gateway_command("serve"), int(env["GATEWAY_PORT"]), env, tmp, cwd)
    wait_ready(server, "/healthz")
    return server, secret


@contextlib.contextmanager
def nginx(tmp: Path, upstream_port: int, static_file: Path | None = None) -> Iterator[Server]:
    """nginx with one worker: /v1/ proxied to the upstream (keep-alive), /file the static file."""
    root = tmp / "nginx"
    root.mkdir(exist_ok=True)
    port = free_port()
    static = f"location = /file {{ alias {static_file}; default_type application/json; }}"
    conf = root / "nginx.conf"
    conf.write_text(
        f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  upstream upstream_api {{ server {HOST}:{upstream_port}; keepalive 64; }}
  server {{
    listen {HOST}:{port};
    location /v1/ {{
      proxy_pass http://upstream_api;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
    {static if static_file else ""}
  }}
}}
"""
    )
    server = start_server("nginx", [NGINX, "-c", str(conf), "-p", str(root)], port, {}, tmp)
    try:
        wait_ready(server, None)
        yield server
    finally:
        stop_server(server)


# 1. Misses.


async def post_all(
    session: aiohttp.ClientSession, url: str, key: str, n: int, concurrency: int
) -> list[float]:
    """`n` unique generations, `concurrency` at a time: the seconds each took."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    headers["Content-Type"] = "application/json"
    bodies = [unique_generation() for _ in range(n)]
    took: list[float] = []

    async def worker(mine: list[bytes]) -> None:
        for body in mine:
            start = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as answer:
                data = await answer.read()
                if answer.status != 200:
                    raise RuntimeError(f"{url}: {answer.status} {data[:200]!r}")
            took.append(time.perf_counter() - start)

    await asyncio.gather(*(worker(bodies[i::concurrency]) for i in range(concurrency)))
    return took


async def misses(
    targets: dict[str, tuple[Server, str]], sim: Server, ns: argparse.Namespace
) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0)
    out: dict[str, Any] = {}
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session:
        for server, key in targets.values():  # warm-up
            await post_all(session, f"{server.base_url}/v1/images/generations", key, 200, 4)
        for concurrency in (1, 16):
            cpu = dict.fromkeys(targets, 0.0)
            took: dict[str, list[float]] = {name: [] for name in (*targets, "simulator")}
            per_round = max(1, ns.n // ns.rounds)
            for _ in range(ns.rounds):
                for name, (server, key) in targets.items():
                    url = f"{server.base_url}/v1/images/generations"
                    before = tree_cpu(server.pid)
                    took[name] += await post_all(session, url, key, per_round, concurrency)
                    cpu[name] += tree_cpu(server.pid) - before
                if concurrency == 1:
                    url = f"{sim.base_url}/v1/images/generations"
                    took["simulator"] += await post_all(session, url, "", per_round // 2, 1)
            done = per_round * ns.rounds
            level: dict[str, Any] = {
                "cpu_ms_per_request": {k: round(v / done * 1000, 3) for k, v in cpu.items()},
            }
            if concurrency == 1:
                p50 = {k: statistics.median(v) * 1000 for k, v in took.items() if v}
                level["p50_ms"] = {k: round(v, 3) for k, v in p50.items()}
                level["added_p50_ms"] = {
                    k: round(v - p50["simulator"], 3) for k, v in p50.items() if k != "simulator"
                }
            out[f"c{concurrency}"] = level
    return out


async def throughput(
    targets: dict[str, tuple[Server, str]], n: int, rounds: int, concurrency: int = 32
) -> dict[str, float]:
    connector = aiohttp.TCPConnector(limit=0)
    rates: dict[str, list[float]] = {name: [] for name in targets}
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session:
        for _ in range(rounds):
            for name, (server, key) in targets.items():
                url = f"{server.base_url}/v1/images/generations"
                start = time.perf_counter()
                await post_all(session, url, key, n // rounds, concurrency)
                rates[name].append((n // rounds) / (time.perf_counter() - start))
    return {name: round(statistics.median(values), 1) for name, values in rates.items()}


def run_misses(ns: argparse.Namespace, old: Path, tmp: Path) -> dict[str, Any]:
    servers: list[Server] = []
    try:
        sim = start_simulator(tmp)
        servers.append(sim)
        upstream = f"{sim.base_url}/v1"
        targets: dict[str, tuple[Server, str]] = {}
        for name, cwd in (("before", old), ("now", ROOT)):
            targets[name] = start_gateway(f"miss-{name}", tmp, upstream, cwd)
            servers.append(targets[name][0])
        with nginx(tmp, sim.port) as proxy:
            targets = {"nginx": (proxy, ""), **targets}
            result = asyncio.run(misses(targets, sim, ns))
            two = start_gateway("miss-now-2w", tmp, upstream, ROOT, GATEWAY_WORKERS="2")
            servers.append(two[0])
            rps = asyncio.run(
                throughput({**targets, "now_2_workers": two}, ns.throughput_n, ns.rounds)
            )
            result["throughput_rps_c32"] = rps
        return result
    finally:
        for server in reversed(servers):
            stop_server(server)


# 2. Hits.


def run_hits(ns: argparse.Namespace, old: Path, tmp: Path) -> dict[str, Any]:
    body_path = tmp / "answer.json"
    body_path.write_bytes(fixed_body(ns.hit_mib))
    servers: list[Server] = []
    try:
        port = free_port()
        fixed = [PYTHON, str(ROOT / "bench" / "fixed_server.py"), str(port), str(body_path)]
        upstream = start_server("fixed", [*fixed, "upstream"], port, clean_env(), tmp)
        servers.append(upstream)
        wait_ready(upstream, None)
        request = json.dumps({"model": "gpt-image-1", "prompt": "a fox", "quality": "low"})
        targets: dict[str, Target] = {}
        pids: dict[str, int] = {}
        for name, cwd in (("before", old), ("now", ROOT)):
            server, key = start_gateway(f"hit-{name}", tmp, f"{upstream.base_url}/v1", cwd)
            servers.append(server)
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            url = f"{server.base_url}/v1/images/generations"
            targets[name] = Target(name, "POST", url, headers, request.encode())
            pids[name] = server.pid
        with nginx(tmp, upstream.port, body_path) as static:
            targets = {
                "nginx": Target("nginx", "GET", f"{static.base_url}/file", {}, b""),
                **targets,
            }
            return asyncio.run(hits(targets, {"nginx": static.pid, **pids}, ns))
    finally:
        for server in reversed(servers):
            stop_server(server)


async def hits(
    targets: dict[str, Target], pids: dict[str, int], ns: argparse.Namespace
) -> dict[str, Any]:
    for target in targets.values():  # the first request of each gateway is the miss that stores
        await hit_throughput(target, 1, 0.5)
    await asyncio.sleep(0.5)
    for target in targets.values():
        await hit_throughput(target, ns.hit_concurrency, 1.0)  # warm-up
    rounds: dict[str, list[float]] = {name: [] for name in targets}
    cpu, served = dict.fromkeys(targets, 0.0), dict.fromkeys(targets, 0)
    for index in range(ns.rounds):
        order = list(targets.values())
        for target in order if index % 2 == 0 else reversed(order):
            before = tree_cpu(pids[target.name])
            rate = await hit_throughput(target, ns.hit_concurrency, ns.hit_seconds)
            cpu[target.name] += tree_cpu(pids[target.name]) - before
            served[target.name] += int(rate["requests"])
            rounds[target.name].append(rate["rps"])
    rps = {name: round(statistics.median(values), 1) for name, values in rounds.items()}
    return {
        "body_mib": ns.hit_mib,
        "concurrency": ns.hit_concurrency,
        "rps": rps,
        "cpu_ms_per_hit": {name: round(cpu[name] / served[name] * 1000, 3) for name in targets},
        "of_nginx": {k: round(v / rps["nginx"], 3) for k, v in rps.items() if k != "nginx"},
    }


# 3. Streams.

TINY_PNG = base64.b64encode(os.urandom(1500)).decode()  # a partial image's size hardly matters


def ticker(port: int) -> None:
    """The streams' upstream: each stream's events at the times its request asks for
    (`t0`, `spacing`, `events`, `interval`: unknown fields the gateway passes on), stamped."""

    async def stream(request: web.Request) -> web.StreamResponse:
        asked = await request.json()
        answer = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await answer.prepare(request)
        for index in range(int(asked["events"])):
            due = asked["t0"] + asked["spacing"] + index * asked["interval"]
            await asyncio.sleep(max(0.0, due - time.time()))
            event = {
                "type": "image_generation.partial_image",
                "b64_json": TINY_PNG,
                "partial_image_index": index,
                "t": time.time(),
            }
            await answer.write(_event(event))
        usage = {
            "input_tokens": 10,
            "output_tokens": 272,
            "total_tokens": 282,
            "input_tokens_details": {"text_tokens": 10, "image_tokens": 0},
        }
        done = {"type": "image_generation.completed", "b64_json": TINY_PNG, "usage": usage}
        await answer.write(_event(done))
        await answer.write_eof()
        return answer

    app = web.Application()
    app.router.add_post("/v1/images/generations", stream)
    web.run_app(app, host=HOST, port=port, print=None, access_log=None, backlog=4096)


def _event(payload: dict[str, Any]) -> bytes:
    return f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n".encode()


async def open_streams(base: str, key: str, pid: int, ns: argparse.Namespace) -> dict[str, Any]:
    """Open every stream, then take their events: lateness, and the gateway's RSS."""
    process = psutil.Process(pid)
    idle = peak = process.memory_info().rss
    sampling = True

    def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    late: list[float] = []
    opened = 0
    t0 = time.time() + ns.open_s  # every stream is open by then
    headers = {"Authorization": f"Bearer {key}"}
    connector = aiohttp.TCPConnector(limit=0)

    async def one(index: int, session: aiohttp.ClientSession) -> None:
        nonlocal opened
        body = {
            "model": "gpt-image-1",
            "prompt": f"stream {index}",
            "quality": "low",
            "stream": True,
            "partial_images": 3,
            "t0": t0,
            "spacing": ns.interval_s * index / ns.streams,
            "events": ns.events,
            "interval": ns.interval_s,
        }
        async with session.post(f"{base}/v1/images/generations", json=body, headers=headers) as r:
            if r.status != 200:
                raise RuntimeError(f"stream {index}: {r.status} {await r.text()}")
            opened += 1
            async for line in r.content:
                if line.startswith(b"data:") and b'"t":' in line:
                    late.append(time.time() - json.loads(line[5:])["t"])

    try:
        async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session:
            await asyncio.gather(*(one(i, session) for i in range(ns.streams)))
    finally:
        sampling = False
        sampler.join()
    if opened < ns.streams or time.time() < t0:
        raise RuntimeError(f"only {opened} of {ns.streams} streams opened")
    return {
        "streams": ns.streams,
        "events": len(late),
        "lateness_ms": summary_ms(late),
        "rss_idle_mib": round(idle / MIB, 1),
        "rss_growth_mib": round((peak - idle) / MIB, 1),
    }


def run_streams(ns: argparse.Namespace, old: Path, tmp: Path) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, ns.streams * 4 + 1024))
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))  # the servers inherit it
    port = free_port()
    tick = start_server("ticker", [PYTHON, __file__, "--ticker", str(port)], port, clean_env(), tmp)
    results: dict[str, Any] = {}
    try:
        wait_ready(tick, None)
        for name, cwd in (("before", old), ("now", ROOT)):
            server, key = start_gateway(f"streams-{name}", tmp, f"{tick.base_url}/v1", cwd)
            try:
                results[name] = asyncio.run(open_streams(server.base_url, key, server.pid, ns))
            finally:
                stop_server(server)
    finally:
        stop_server(tick)
    return results


# 4. Scaled mode.


async def scaled_cpu(
    replicas: list[tuple[Server, str]], backends: list[int], n: int
) -> dict[str, dict[str, float]]:
    """CPU per request of the gateways, and of PostgreSQL + Redis, for one replica (sequential)
    and three (round-robin, one request at a time on each)."""
    out: dict[str, dict[str, float]] = {}
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        for server, key in replicas:  # warm-up
            await post_all(session, f"{server.base_url}/v1/images/generations", key, 100, 1)
        for label, serving in (("one_replica", replicas[:1]), ("three_replicas", replicas)):
            gateways = [server.pid for server, _ in serving]
            before = sum(tree_cpu(pid) for pid in gateways)
            backend_before = sum(tree_cpu(pid) for pid in backends)
            await asyncio.gather(
                *(
                    post_all(
                        session,
                        f"{server.base_url}/v1/images/generations",
                        key,
                        n // len(serving),
                        1,
                    )
                    for server, key in serving
                )
            )
            done = n // len(serving) * len(serving)
            gateway_ms = (sum(tree_cpu(pid) for pid in gateways) - before) / done * 1000
            backend_ms = (sum(tree_cpu(pid) for pid in backends) - backend_before) / done * 1000
            out[label] = {
                "gateway_cpu_ms": round(gateway_ms, 3),
                "postgres_redis_cpu_ms": round(backend_ms, 3),
                "total_cpu_ms": round(gateway_ms + backend_ms, 3),
            }
    return out


def run_scaled(ns: argparse.Namespace, old: Path, tmp: Path) -> dict[str, Any]:
    postgres, redis = PostgresServer(), RedisServer(tmp)
    servers: list[Server] = []
    results: dict[str, Any] = {}
    try:
        postgres.start()
        redis.start()
        assert redis.process is not None
        postmaster = int((postgres.root / "data" / "postmaster.pid").read_text().split()[0])
        backends = [postmaster, redis.process.pid]
        sim = start_simulator(tmp)
        servers.append(sim)
        for name, cwd in (("before", old), ("now", ROOT)):
            shared = {
                "GATEWAY_DATABASE_URL": asyncio.run(postgres.new_database()),
                "GATEWAY_REDIS_URL": redis.url,
            }
            env = gateway_env(f"scaled-{name}-cli", tmp, f"{sim.base_url}/v1", cwd, **shared)
            key = create_key(env, team_args=(*LIMITS, "--ipm", "1000000"), cwd=cwd)
            replicas = []
            for index in range(3):
                server, _ = start_gateway(
                    f"scaled-{name}-{index}", tmp, f"{sim.base_url}/v1", cwd, key=False, **shared
                )
                servers.append(server)
                replicas.append((server, key))
            results[name] = asyncio.run(scaled_cpu(replicas, backends, ns.scaled_n))
            for server, _ in replicas:
                stop_server(server)
    finally:
        for server in reversed(servers):
            stop_server(server)
        redis.stop()
        postgres.stop()
    return results


# The run.


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default=BEFORE_REV, help="the older revision to compare")
    parser.add_argument("--only", nargs="+", default=["misses", "hits", "streams", "scaled"])
    parser.add_argument("--n", type=int, default=2000, help="misses per server and level")
    parser.add_argument("--rounds", type=int, default=4, help="alternations per measure")
    parser.add_argument("--throughput-n", type=int, default=4000)
    parser.add_argument("--hit-mib", type=float, default=2.8)
    parser.add_argument("--hit-concurrency", type=int, default=8)
    parser.add_argument("--hit-seconds", type=float, default=5.0)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--events", type=int, default=5, help="partial images per stream")
    parser.add_argument("--interval-s", type=float, default=1.0)
    parser.add_argument("--open-s", type=float, default=15.0, help="time to open every stream")
    parser.add_argument("--scaled-n", type=int, default=1200)
    parser.add_argument("--quick", action="store_true", help="small counts: does it all run")
    parser.add_argument("--ticker", type=int, help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    if ns.ticker:
        ticker(ns.ticker)
        return {}
    if ns.quick:
        ns.n, ns.rounds, ns.throughput_n, ns.hit_seconds = 200, 2, 400, 1.0
        ns.streams, ns.events, ns.open_s, ns.scaled_n = 50, 2, 3.0, 120
    runs = {"misses": run_misses, "hits": run_hits, "streams": run_streams, "scaled": run_scaled}
    result: dict[str, Any] = {"rev": ns.rev, "args": vars(ns)}
    with tempfile.TemporaryDirectory(prefix="gw-speed-") as tmp_name, worktree(ns.rev) as old:
        for part in ns.only:
            (Path(tmp_name) / part).mkdir()
            result[part] = runs[part](ns, old, Path(tmp_name) / part)
            print(f"{part}: {json.dumps(result[part], indent=1)}", flush=True)
    print_table(result)
    # A partial run (--only) has its own file: it never overwrites the whole table.
    name = "speed" if sorted(ns.only) == sorted(runs) else "speed-" + "-".join(ns.only)
    write_result(name + ("-quick" if ns.quick else ""), result)
    return result


def print_table(result: dict[str, Any]) -> None:
    """The issue's table: nginx, before and now side by side."""
    rows: list[tuple[str, str, str, str]] = []
    if misses := result.get("misses"):
        c1, c16 = misses["c1"]["cpu_ms_per_request"], misses["c16"]["cpu_ms_per_request"]
        added, rps = misses["c1"]["added_p50_ms"], misses["throughput_rps_c32"]
        measures = {
            "CPU per miss c=1 (ms)": c1,
            "CPU per miss c=16 (ms)": c16,
            "added p50 c=1 (ms)": added,
            "throughput c=32 (rps)": rps,
        }
        for label, row in measures.items():
            rows.append((label, f"{row['nginx']}", f"{row['before']}", f"{row['now']}"))
        rows.append(("  now, 2 workers (rps)", "", "", f"{rps['now_2_workers']}"))
    if hits := result.get("hits"):
        rps = hits["rps"]
        rows.append((f"hits {hits['body_mib']} MB c={hits['concurrency']} (rps)",
                     f"{rps['nginx']}", f"{rps['before']}", f"{rps['now']}"))  # fmt: skip
        share, cpu = hits["of_nginx"], hits["cpu_ms_per_hit"]
        rows.append(("  of nginx", "1", f"{share['before']}", f"{share['now']}"))
        rows.append(("  CPU per hit (ms)", f"{cpu['nginx']}", f"{cpu['before']}", f"{cpu['now']}"))
    if streams := result.get("streams"):
        before, now = streams["before"], streams["now"]
        late = (before["lateness_ms"]["p99"], now["lateness_ms"]["p99"])
        rows.append(
            (f"{now['streams']} streams, lateness p99 (ms)", "", f"{late[0]}", f"{late[1]}")
        )
        rows.append(("  RSS growth (MiB)", "", f"{before['rss_growth_mib']}",
                     f"{now['rss_growth_mib']}"))  # fmt: skip
    if scaled := result.get("scaled"):
        for label in ("one_replica", "three_replicas"):
            before, now = scaled["before"][label], scaled["now"][label]
            rows.append((f"scaled, {label.replace('_', ' ')}: total CPU (ms)", "",
                         f"{before['total_cpu_ms']}", f"{now['total_cpu_ms']}"))  # fmt: skip
        if misses:
            sqlite = result["misses"]["c1"]["cpu_ms_per_request"]
            one = scaled["now"]["one_replica"]["total_cpu_ms"]
            old = scaled["before"]["one_replica"]["total_cpu_ms"]
            rows.append(("  of SQLite's (c=1)", "", f"{old / sqlite['before']:.2f}x",
                         f"{one / sqlite['now']:.2f}x"))  # fmt: skip
    width = max(len(row[0]) for row in rows) if rows else 0
    print(f"\n{'measure':<{width}}  {'nginx':>9}  {result['rev']:>9}  {'now':>9}")
    for label, *cells in rows:
        print(f"{label:<{width}}  " + "  ".join(f"{cell:>9}" for cell in cells))


if __name__ == "__main__":
    main()
