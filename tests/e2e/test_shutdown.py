"""SIGTERM on a real `gateway serve` process: in-flight streams finish and keep their ledger row."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(port: int, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture
def grace_s() -> str:
    return "30"


@pytest.fixture
def servers(
    tmp_path: Path, grace_s: str
) -> Iterator[tuple[subprocess.Popen[bytes], int, str, Path]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    sim_port, gw_port = free_port(), free_port()
    simulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "simulator",
            "--port",
            str(sim_port),
            "--partial-interval-ms",
            "300",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env |= {
        "GATEWAY_DATA_DIR": str(tmp_path / "data"),
        "GATEWAY_PORT": str(gw_port),
        "GATEWAY_UPSTREAM_URL": f"http://127.0.0.1:{sim_port}/v1",
        "GATEWAY_SHUTDOWN_GRACE_S": grace_s,
    }
    subprocess.run(
        [sys.executable, "-m", "gateway", "teams", "create", "t"],
        env=env,
        check=True,
        capture_output=True,
    )
    created = subprocess.run(
        [sys.executable, "-m", "gateway", "keys", "create", "--team", "t"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    key = created.stdout.strip().splitlines()[-1]
    gateway = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until_up(sim_port)
        wait_until_up(gw_port)
        yield gateway, gw_port, key, tmp_path / "data" / "gateway.db"
    finally:
        for process in (gateway, simulator):
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


def stream_through_sigterm(port: int, key: str, gateway: subprocess.Popen[bytes]) -> list[str]:
    """Start a stream of 3 partial images (300 ms apart), SIGTERM the gateway at its first
    event, and read what arrives."""
    events = []
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    body = {
        "model": "gpt-image-1",
        "prompt": "p",
        "quality": "low",
        "stream": True,
        "partial_images": 3,
    }
    connection.request(
        "POST",
        "/v1/images/generations",
        body=json.dumps(body),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    response = connection.getresponse()
    while line := response.readline().decode():
        if line.startswith("event:"):
            events.append(line.split(":", 1)[1].strip())
            if len(events) == 1:
                gateway.send_signal(signal.SIGTERM)  # mid-stream
        elif line.startswith(": gateway-cost-usd="):
            events.append(line.strip())
    connection.close()
    return events


def ledger(db: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT outcome, cost_nanos FROM ledger").fetchall()


def test_sigterm_lets_an_in_flight_stream_finish_and_keeps_its_row(
    servers: tuple[subprocess.Popen[bytes], int, str, Path],
) -> None:
    gateway, port, key, db = servers
    events = stream_through_sigterm(port, key, gateway)
    assert events == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
        ": gateway-cost-usd=0.022885",
    ]
    assert gateway.wait(timeout=15) == 0
    # 272 + 3 x 100 image tokens x $40/1M + 1 text token x $5/1M
    assert ledger(db) == [("ok", 22_885_000)]


@pytest.mark.parametrize("grace_s", ["0.45"])
def test_a_stream_longer_than_the_grace_ends_cut_and_charged_for_what_arrived(
    servers: tuple[subprocess.Popen[bytes], int, str, Path],
) -> None:
    gateway, port, key, db = servers
    started = time.monotonic()
    events = stream_through_sigterm(port, key, gateway)
    # Partial images come at 0, 0.3, 0.6 s...: the grace ends after the second.
    assert events == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "error",
        ": gateway-cost-usd=0.008005",
    ]
    assert gateway.wait(timeout=15) == 0
    assert time.monotonic() - started < 3
    # 2 partial images x 100 image tokens x $40/1M, and the input upstream read: 1 text token
    # x $5/1M
    assert ledger(db) == [("stream_cut", 8_005_000)]
