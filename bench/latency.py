"""Latency the gateway adds: the same request sent alternately direct to the simulator and
through the gateway, sequentially, from one keep-alive client session.

Two measurements:
  * non-streaming generation (gpt-image-1, quality low): time from send to the whole body read;
  * streaming generation (partial_images 2): time from send to the first whole SSE event.

Run: .venv/bin/python bench/latency.py [--n 2000 --warmup 200 --stream-n 500 ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE_OFF, Stack, running_stack, summary_ms, write_result

PROMPT = "a red fox in the snow"
GENERATION = {"model": "gpt-image-1", "prompt": PROMPT, "quality": "low"}
STREAM = {**GENERATION, "stream": True, "partial_images": 2}
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60)

Probe = Callable[[str, dict[str, str]], Awaitable[float]]


def _check(status: int, body: bytes, url: str) -> None:
    if status != 200:
        raise RuntimeError(f"{url} answered {status}: {body[:300]!r}")


async def time_whole_response(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes
) -> float:
    """Seconds from sending the request to having read the whole response body."""
    start = time.perf_counter()
    async with session.post(url, data=body, headers=headers) as resp:
        data = await resp.read()
        elapsed = time.perf_counter() - start
    _check(resp.status, data, url)
    return elapsed


async def time_first_event(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes
) -> float:
    """Seconds from sending the request to the end of the first SSE event (its blank line).

    The rest of the stream is read (untimed) so the connection can be reused.
    """
    start = time.perf_counter()
    first: float | None = None
    data = bytearray()
    async with session.post(url, data=body, headers=headers) as resp:
        async for chunk in resp.content.iter_any():
            data += chunk
            if first is None and b"\n\n" in data:
                first = time.perf_counter() - start
    _check(resp.status, bytes(data), url)
    if first is None or b".completed" not in data:
        raise RuntimeError(f"{url}: stream without a first or a completed event: {data[:300]!r}")
    return first


async def interleaved(
    probe: Probe,
    targets: dict[str, tuple[str, dict[str, str]]],
    n: int,
    max_seconds: float,
) -> tuple[dict[str, list[float]], bool]:
    """`n` rounds; each round probes every target once, alternating which goes first.

    Returns the samples per target and whether the time budget cut the rounds short.
    """
    samples: dict[str, list[float]] = {name: [] for name in targets}
    names = list(targets)
    deadline = time.monotonic() + max_seconds
    for i in range(n):
        if time.monotonic() > deadline:
            return samples, True
        for name in names if i % 2 == 0 else reversed(names):
            url, headers = targets[name]
            samples[name].append(await probe(url, headers))
    return samples, False


def added(direct: dict[str, float], gateway: dict[str, float]) -> dict[str, float]:
    return {f"added_{p}": round(gateway[p] - direct[p], 4) for p in ("p50", "p90", "p99")} | {
        "ratio_p50": round(gateway["p50"] / direct["p50"], 3)
    }


async def measure(
    stack: Stack,
    label: str,
    timer: Callable[[aiohttp.ClientSession, str, dict[str, str], bytes], Awaitable[float]],
    payload: dict[str, Any],
    n: int,
    warmup: int,
    max_seconds: float,
) -> dict[str, Any]:
    body = json.dumps(payload).encode()
    base = {"Content-Type": "application/json"}
    targets = {
        "direct": (
            stack.sim_url + "/images/generations",
            {**base, "Authorization": "Bearer sk-bench-direct"},
        ),
        "gateway": (
            stack.gw_url + "/images/generations",
            {**base, "Authorization": f"Bearer {stack.key}"},
        ),
    }
    connections = 0

    async def on_connect(*_: Any) -> None:
        nonlocal connections
        connections += 1

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(on_connect)
    gw_proc = psutil.Process(stack.gateway.pid)
    sim_proc = psutil.Process(stack.simulator.pid)
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT, trace_configs=[trace]) as session:

        async def probe(url: str, headers: dict[str, str]) -> float:
            return await timer(session, url, headers, body)

        await interleaved(probe, targets, warmup, max_seconds)
        gw_cpu, sim_cpu = sum(gw_proc.cpu_times()[:2]), sum(sim_proc.cpu_times()[:2])
        started = time.monotonic()
        samples, truncated = await interleaved(probe, targets, n, max_seconds)
        wall = time.monotonic() - started
        gw_cpu = sum(gw_proc.cpu_times()[:2]) - gw_cpu
        sim_cpu = sum(sim_proc.cpu_times()[:2]) - sim_cpu
    done = len(samples["gateway"])
    direct, gateway = summary_ms(samples["direct"]), summary_ms(samples["gateway"])
    return {
        "label": label,
        "payload": payload,
        "warmup_each": warmup,
        "n_each": done,
        "truncated_by_time_budget": truncated,
        "wall_s": round(wall, 2),
        "client_connections_opened": connections,
        "gateway_cpu_ms_per_request": round(gw_cpu * 1000 / done, 3),
        "simulator_cpu_ms_per_request": round(sim_cpu * 1000 / (2 * done), 3),
        "direct_ms": direct,
        "gateway_ms": gateway,
        **added(direct, gateway),
    }


def format_result(r: dict[str, Any]) -> str:
    d, g = r["direct_ms"], r["gateway_ms"]
    lines = [
        f"{r['label']}  (n={r['n_each']} each, interleaved"
        f"{', CUT SHORT by time budget' if r['truncated_by_time_budget'] else ''})",
        f"  {'':8} {'p50':>9} {'p90':>9} {'p99':>9} {'max':>9}  ms",
        f"  {'direct':8} {d['p50']:9.3f} {d['p90']:9.3f} {d['p99']:9.3f} {d['max']:9.3f}",
        f"  {'gateway':8} {g['p50']:9.3f} {g['p90']:9.3f} {g['p99']:9.3f} {g['max']:9.3f}",
        f"  added    {r['added_p50']:9.3f} {r['added_p90']:9.3f} {r['added_p99']:9.3f}"
        f"            (gateway/direct p50 = {r['ratio_p50']:.2f}x)",
        f"  gateway CPU {r['gateway_cpu_ms_per_request']:.3f} ms/request, simulator CPU"
        f" {r['simulator_cpu_ms_per_request']:.3f} ms/request,"
        f" client connections opened: {r['client_connections_opened']}",
    ]
    return "\n".join(lines)


async def run(ns: argparse.Namespace) -> dict[str, Any]:
    sim_args = ["--latency-ms", "0", "--partial-interval-ms", "0", "--image-px", str(ns.image_px)]
    with running_stack(sim_args, CACHE_OFF) as stack:
        plain = await measure(
            stack,
            "non-streaming generation: whole response",
            time_whole_response,
            GENERATION,
            ns.n,
            ns.warmup,
            ns.max_seconds,
        )
        print(format_result(plain), flush=True)
        stream = await measure(
            stack,
            "streaming generation: first SSE event",
            time_first_event,
            STREAM,
            ns.stream_n,
            ns.stream_warmup,
            ns.max_seconds,
        )
        print(format_result(stream), flush=True)
        problems = stack.gateway.log_problems()
    for line in problems[:10]:
        print(f"gateway log: {line}")
    return {"non_streaming": plain, "stream_first_event": stream, "gateway_log_problems": problems}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000, help="non-streaming requests each")
    parser.add_argument("--warmup", type=int, default=200, help="non-streaming warm-up each")
    parser.add_argument("--stream-n", type=int, default=500, help="streaming requests each")
    parser.add_argument("--stream-warmup", type=int, default=50, help="streaming warm-up each")
    parser.add_argument(
        "--image-px", type=int, default=64, help="side of the simulator's PNGs (its default is 64)"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=900.0,
        help="time budget per phase (warm-up and measurement each)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ns = parse_args(argv)
    if min(ns.n, ns.stream_n) < 1 or min(ns.warmup, ns.stream_warmup) < 0:
        raise SystemExit("--n and --stream-n must be at least 1, warm-ups at least 0")
    result = asyncio.run(run(ns))
    path = write_result("latency", {"args": vars(ns), **result})
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
