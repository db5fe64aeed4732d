"""The Responses API's image tool through the gateway, measured:

1. CPU per proxied request, side by side in one run: a gateway (its own process, defaults on, in
   front of the simulator answering at once) is sent, in alternating rounds, unique image
   generations (`gpt-image-1-mini`, low, 1024x1024) and unique responses that make the same
   image (`gpt-5` with the image tool), each a cache miss; the gateway's CPU seconds (user +
   system, from /proc) over each kind's rounds, divided by its requests;
2. a 1,000-event response stream relayed through the gateway: a ticker upstream (its own
   process) writes an event every --interval-ms, each stamped with the moment it was written;
   the client notes when each arrives. Lateness is arrival minus stamp (both on this machine's
   clock), p50 / p99 / max.

Run: .venv/bin/python bench/responses.py [--n 400] [--rounds 4] [--events 1000] [--interval-ms 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from aiohttp import web
from common import (
    HOST,
    clean_env,
    create_key,
    free_port,
    gateway_command,
    running_stack,
    start_server,
    stop_server,
    summary_ms,
    wait_ready,
    write_result,
)

TOOL = {
    "type": "image_generation",
    "model": "gpt-image-1-mini",
    "quality": "low",
    "size": "1024x1024",
}


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def generation() -> tuple[str, bytes]:
    prompt = f"a lighthouse at dawn, take {uuid.uuid4().hex}"
    body = {"model": "gpt-image-1-mini", "prompt": prompt, "quality": "low", "size": "1024x1024"}
    return "/v1/images/generations", json.dumps(body).encode()


def response() -> tuple[str, bytes]:
    prompt = f"a lighthouse at dawn, take {uuid.uuid4().hex}"
    body = {"model": "gpt-5", "input": prompt, "tools": [TOOL], "max_output_tokens": 300}
    return "/v1/responses", json.dumps(body).encode()


async def send(session: aiohttp.ClientSession, base: str, key: str, n: int, kind: Any) -> None:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    for _ in range(n):
        path, body = kind()
        async with session.post(base + path, data=body, headers=headers) as answer:
            data = await answer.read()
            if answer.status != 200 or answer.headers.get("x-gateway-cache") != "miss":
                raise RuntimeError(f"{path}: {answer.status} {data[:200]!r}")


async def cpu_side_by_side(base: str, key: str, pid: int, n: int, rounds: int) -> dict[str, Any]:
    kinds = {"generation": generation, "response": response}
    cpu = dict.fromkeys(kinds, 0.0)
    async with aiohttp.ClientSession() as session:
        for kind in kinds.values():  # warm-up
            await send(session, base, key, 50, kind)
        for _ in range(rounds):
            for name, kind in kinds.items():
                before = cpu_seconds(pid)
                await send(session, base, key, n // rounds, kind)
                cpu[name] += cpu_seconds(pid) - before
    done = n // rounds * rounds
    per = {name: round(seconds / done * 1000, 3) for name, seconds in cpu.items()}
    return {
        "requests_each": done,
        "cpu_ms_per_request": per,
        "ratio": round(per["response"] / per["generation"], 3),
    }


def ticker(port: int, events: int, interval_s: float) -> None:
    """The upstream of the lateness run: a response stream of `events` stamped events."""

    async def stream(request: web.Request) -> web.StreamResponse:
        await request.read()
        answer = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await answer.prepare(request)
        shell = {"id": "resp_tick", "object": "response", "status": "in_progress", "output": []}
        await answer.write(_event("response.created", {"response": shell}))
        for index in range(events):
            await asyncio.sleep(interval_s)
            payload = {"item_id": "ig_1", "output_index": 0, "delta": str(index), "t": time.time()}
            await answer.write(_event("response.output_text.delta", payload))
        usage = {
            "input_tokens": 10,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 10,
            "output_tokens_details": {"reasoning_tokens": 0},
        }
        done = {**shell, "status": "completed", "usage": usage, "tool_usage": None}
        await answer.write(_event("response.completed", {"response": done}))
        await answer.write_eof()
        return answer

    app = web.Application()
    app.router.add_post("/v1/responses", stream)
    app.router.add_get("/v1/models", lambda request: web.json_response({"data": []}))
    web.run_app(app, host=HOST, port=port, print=None)


def _event(kind: str, payload: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **payload})}\n\n".encode()


async def lateness(base: str, key: str) -> dict[str, Any]:
    late: list[float] = []
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    body = {
        "model": "gpt-5",
        "input": "tick",
        "tools": [TOOL],
        "stream": True,
        "max_output_tokens": 300,
    }
    timeout = aiohttp.ClientTimeout(total=600)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(
            base + "/v1/responses", json=body, headers={**headers, "Cache-Control": "no-store"}
        ) as answer,
    ):
        if answer.status != 200:
            raise RuntimeError(f"{answer.status}: {await answer.text()}")
        async for line in answer.content:
            if line.startswith(b"data:") and b'"t":' in line:
                late.append(time.time() - json.loads(line[5:])["t"])
    return {"events": len(late), "lateness_ms": summary_ms(late)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--interval-ms", type=float, default=5.0)
    parser.add_argument("--ticker", type=int, help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.ticker:
        ticker(ns.ticker, ns.events, ns.interval_ms / 1000)
        return
    result: dict[str, Any] = {}
    with running_stack() as stack:
        base = stack.gateway.base_url
        result["cpu"] = asyncio.run(
            cpu_side_by_side(base, stack.key, stack.gateway.pid, ns.n, ns.rounds)
        )
    with tempfile.TemporaryDirectory(prefix="gw-tick-") as tmp_name:
        tmp = Path(tmp_name)
        tick_port, gw_port = free_port(), free_port()
        tick_args = [
            sys.executable,
            __file__,
            "--ticker",
            str(tick_port),
            "--events",
            str(ns.events),
            "--interval-ms",
            str(ns.interval_ms),
        ]
        servers = [start_server("ticker", tick_args, tick_port, clean_env(), tmp)]
        try:
            wait_ready(servers[0], None)
            env = clean_env(
                GATEWAY_HOST=HOST,
                GATEWAY_PORT=str(gw_port),
                GATEWAY_UPSTREAM_URL=f"http://{HOST}:{tick_port}/v1",
                GATEWAY_DATA_DIR=str(tmp / "data"),
                GATEWAY_LOG_LEVEL="WARNING",
            )
            key = create_key(env)
            servers.append(start_server("gateway", gateway_command("serve"), gw_port, env, tmp))
            wait_ready(servers[1], "/healthz")
            result["stream"] = asyncio.run(lateness(servers[1].base_url, key))
        finally:
            for server in reversed(servers):
                stop_server(server)
    result["args"] = vars(ns)
    print(json.dumps(result, indent=2))
    write_result("responses", result)


if __name__ == "__main__":
    main()
