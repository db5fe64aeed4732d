"""What accounting adds per request over the core gateway, measured side by side in one run.

The core gateway is this repository at CORE_REV (the gateway core, before accounting), checked
out into a temporary git worktree. Both gateways run against one simulator; the same generation
request goes round-robin to the simulator directly, the core gateway, and the current gateway,
whose key's team has a budget and rate limits so that every accounting step runs (estimate, rate
limit admission, budget reservation, usage parsing, the settling ledger row).

Run: .venv/bin/python bench/accounting.py [--n 2000] [--core-rev REV] [--limits-on-both]

`--core-rev b6c04d4 --limits-on-both` measures instead what came after that revision (metrics,
the request log line) with both gateways doing the same accounting.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from common import (
    CACHE_OFF,
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
from latency import GENERATION, REQUEST_TIMEOUT, interleaved, time_whole_response

CORE_REV = "2452528"  # the last commit of the gateway core (issue 2), before accounting


@contextlib.contextmanager
def worktree(rev: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="gw-core-") as tmp:
        path = Path(tmp) / "core"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(path), rev],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            yield path
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, capture_output=True
            )


def shipped(cwd: Path, name: str) -> Path:
    packaged = cwd / "gateway" / "config" / name
    return packaged if packaged.exists() else cwd / "config" / name


def start_gateway(
    name: str, tmp: Path, sim_port: int, cwd: Path, team_args: Sequence[str]
) -> tuple[Server, str]:
    port = free_port()
    env = clean_env(
        GATEWAY_HOST=HOST,
        GATEWAY_PORT=str(port),
        GATEWAY_UPSTREAM_URL=f"http://{HOST}:{sim_port}/v1",
        GATEWAY_DATA_DIR=str(tmp / name),
        # Each revision's own shipped files: older ones kept them at the top level.
        GATEWAY_PRICES=str(shipped(cwd, "prices.toml")),
        **CACHE_OFF,
    )
    key = create_key(env, team_args=team_args, cwd=cwd)
    server = start_server(name, gateway_command("serve"), port, env, tmp, cwd=cwd)
    wait_ready(server, "/healthz")
    return server, key


async def measure(targets: dict[str, tuple[str, dict[str, str]]], n: int, warmup: int) -> Any:
    body = json.dumps(GENERATION).encode()
    connector = aiohttp.TCPConnector(limit=4)
    async with aiohttp.ClientSession(connector=connector, timeout=REQUEST_TIMEOUT) as session:

        async def probe(url: str, headers: dict[str, str]) -> float:
            return await time_whole_response(session, url, headers, body)

        await interleaved(probe, targets, warmup, 600)
        samples, cut = await interleaved(probe, targets, n, 900)
    return {name: summary_ms(values) for name, values in samples.items()}, cut


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--core-rev", default=CORE_REV)
    parser.add_argument(
        "--limits-on-both",
        action="store_true",
        help="give the baseline's team the same budget and limits (compare two revisions)",
    )
    ns = parser.parse_args(argv)
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="gw-acct-") as tmp_name, worktree(ns.core_rev) as core:
        tmp = Path(tmp_name)
        try:
            sim = start_simulator(tmp)
            servers.append(sim)
            sim_port = sim.port
            limits = (
                "--budget-usd",
                "1000000",
                "--budget-period",
                "month",
                "--rpm",
                "1000000",
                "--ipm",
                "1000000",
            )
            core_limits = limits if ns.limits_on_both else ()
            core_gw, core_key = start_gateway("core", tmp, sim_port, core, core_limits)
            servers.append(core_gw)
            acct_gw, acct_key = start_gateway("accounting", tmp, sim_port, ROOT, limits)
            servers.append(acct_gw)
            json_type = {"Content-Type": "application/json"}
            targets = {
                "direct": (f"{sim.base_url}/v1/images/generations", json_type),
                "core": (
                    f"{core_gw.base_url}/v1/images/generations",
                    json_type | {"Authorization": f"Bearer {core_key}"},
                ),
                "accounting": (
                    f"{acct_gw.base_url}/v1/images/generations",
                    json_type | {"Authorization": f"Bearer {acct_key}"},
                ),
            }
            stats, cut = asyncio.run(measure(targets, ns.n, ns.warmup))
        finally:
            for server in reversed(servers):
                stop_server(server)
    result = {
        "core_rev": ns.core_rev,
        "limits_on_both": ns.limits_on_both,
        "n_each": ns.n,
        "cut_short": cut,
        "ms": stats,
        "accounting_minus_core_p50": round(stats["accounting"]["p50"] - stats["core"]["p50"], 4),
        "accounting_minus_core_p99": round(stats["accounting"]["p99"] - stats["core"]["p99"], 4),
        "environment": environment(),
    }
    print(f"non-streaming generation (n={ns.n} each, round-robin, keep-alive)")
    print(f"  {'':12}{'p50':>9}{'p90':>9}{'p99':>9}  ms")
    for name, s in stats.items():
        print(f"  {name:12}{s['p50']:9.3f}{s['p90']:9.3f}{s['p99']:9.3f}")
    print(
        f"  accounting adds p50 {result['accounting_minus_core_p50']:+.3f} ms,"
        f" p99 {result['accounting_minus_core_p99']:+.3f} ms over the core gateway ({ns.core_rev})"
    )
    write_result("accounting", result)
    return result


if __name__ == "__main__":
    main()
