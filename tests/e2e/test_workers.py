"""`gateway serve --workers 2`: two processes share the port, and `/metrics` from either adds
up the traffic both served; SIGTERM stops them all, exit 0, with every ledger row written."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_shutdown import free_port, wait_until_up

REQUESTS = 24


def total(text: str, name: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def served_by(tmp_path: Path) -> set[int]:
    """The processes that logged a request so far."""
    lines = (tmp_path / "gateway.log").read_text().splitlines()
    requests = (json.loads(line) for line in lines if line.startswith("{"))
    return {line["pid"] for line in requests if line["logger"] == "gateway.requests"}


def test_metrics_add_up_across_workers(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    sim_port, port = free_port(), free_port()
    simulator = subprocess.Popen(
        [sys.executable, "-m", "gateway", "simulator", "--port", str(sim_port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env |= {
        "GATEWAY_DATA_DIR": str(tmp_path / "data"),
        "GATEWAY_PORT": str(port),
        "GATEWAY_UPSTREAM_URL": f"http://127.0.0.1:{sim_port}/v1",
        "GATEWAY_WORKERS": "2",
        "GATEWAY_CACHE_ENABLED": "false",
    }
    run: dict[str, Any] = {"env": env, "check": True, "capture_output": True, "text": True}
    subprocess.run([sys.executable, "-m", "gateway", "teams", "create", "t"], **run)
    created = subprocess.run(
        [sys.executable, "-m", "gateway", "keys", "create", "--team", "t"], **run
    )
    key = created.stdout.strip().splitlines()[-1]
    log = (tmp_path / "gateway.log").open("w")
    gateway = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve"], env=env, stdout=log, stderr=log
    )
    try:
        wait_until_up(sim_port)
        wait_until_up(port)
        # A new connection per request, so the kernel spreads them over the workers.
        fresh = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0))
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key=key, http_client=fresh, max_retries=0
        )
        # Until both workers have served some (the second may start listening a moment after
        # the first): the log names the process of every request.
        sent = 0
        while sent < REQUESTS or (len(served_by(tmp_path)) < 2 and sent < 10 * REQUESTS):
            client.images.generate(model="gpt-image-1", prompt=f"p{sent}", quality="low")
            sent += 1
        # The last request's ending (which counts it) may still run as its answer arrives.
        deadline = time.monotonic() + 5
        while (
            total(fresh.get(f"http://127.0.0.1:{port}/metrics").text, "gateway_requests_total")
            < sent
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        scrapes = [fresh.get(f"http://127.0.0.1:{port}/metrics").text for _ in range(6)]
        fresh.close()
        for text in scrapes:  # whichever worker answered, it counts both workers' requests
            assert total(text, "gateway_requests_total") == sent
            assert total(text, "gateway_images_total") == sent
            assert total(text, "gateway_requests_in_flight") == 0
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(timeout=30) == 0
    finally:
        for process in (gateway, simulator):
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
        log.close()
    assert len(served_by(tmp_path)) == 2, "both workers served requests"
    with sqlite3.connect(tmp_path / "data" / "gateway.db") as db:
        assert db.execute("SELECT COUNT(*) FROM ledger").fetchone()[0] == sent
