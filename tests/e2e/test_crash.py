"""Issue 10: `kill -9` a real `gateway serve` with requests in flight, start it again. Every
request upstream saw has its ledger row (charged, or `orphaned` and charged its estimate), and
no hold outlives the restart."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import psutil
import pytest
from aiohttp import web

from gateway.admin import accounts
from gateway.store import migrated_store
from simulator import SIMULATOR_STATE, SimulatorConfig, create_simulator_app
from tests.conftest import UPSTREAM_KEY
from tests.e2e.test_shutdown import free_port, wait_until_up

IN_FLIGHT = 8


def start_gateway(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve"], env=env, stdout=out, stderr=out
        )


class Setup(NamedTuple):
    """A recording simulator in this process, a store with a budgeted team and its key, and the
    environment of a `gateway serve` in front of them (its data dir, its port)."""

    simulator: web.Application
    data: Path
    key: str
    port: int
    env: dict[str, str]


async def set_up(
    tmp_path: Path, aiohttp_server: Any, budget_usd: str | None = "100", **settings: str
) -> Setup:
    simulator = create_simulator_app(SimulatorConfig(record=True, api_key=UPSTREAM_KEY))
    upstream = await aiohttp_server(simulator)
    data = tmp_path / "data"
    async with migrated_store(f"sqlite:///{data / 'gateway.db'}") as store:
        await accounts.create_team(store, accounts.TeamCreate(name="t", budget_usd=budget_usd))
        key = (await accounts.create_key(store, accounts.KeyCreate(team="t"))).secret
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GATEWAY_") and k != "PROMETHEUS_MULTIPROC_DIR"
    } | {
        "GATEWAY_DATA_DIR": str(data),
        "GATEWAY_PORT": str(port),
        "GATEWAY_UPSTREAM_URL": str(upstream.make_url("/v1")),
        "GATEWAY_UPSTREAM_API_KEY": UPSTREAM_KEY,
        **settings,
    }
    return Setup(simulator, data, key, port, env)


@pytest.mark.parametrize("budget_usd", ["100", None], ids=["budget", "no-budget"])
async def test_kill_9_under_load_leaves_no_call_unaccounted(
    tmp_path: Path, aiohttp_server: Any, budget_usd: str | None
) -> None:
    """With a budget or without one: every call upstream saw has a hold written before it."""
    simulator, data, key, port, env = await set_up(tmp_path, aiohttp_server, budget_usd)
    log = tmp_path / "gateway.log"
    gateway = start_gateway(env, log)
    try:
        wait_until_up(port)
        url = f"http://127.0.0.1:{port}/v1/images/generations"
        body = {"model": "gpt-image-1.5", "prompt": "a crash", "quality": "low"}
        headers = {"Authorization": f"Bearer {key}"}
        async with aiohttp.ClientSession() as session:
            for i in range(4):  # answered before the crash
                async with session.post(url, json={**body, "prompt": f"ok {i}"}, headers=headers):
                    pass
            slow = {**headers, "x-simulator-fault": "slow:5000"}
            in_flight = [
                asyncio.create_task(
                    session.post(url, json={**body, "prompt": f"slow {i}"}, headers=slow)
                )
                for i in range(IN_FLIGHT)
            ]
            recorded = simulator[SIMULATOR_STATE].requests
            for _ in range(300):  # until every slow request has reached upstream
                if len(recorded) == 4 + IN_FLIGHT:
                    break
                await asyncio.sleep(0.05)
            assert len(recorded) == 4 + IN_FLIGHT
            gateway.send_signal(signal.SIGKILL)
            gateway.wait(timeout=10)
            for task in in_flight:  # their connections broke with the process
                with contextlib.suppress(aiohttp.ClientError):
                    (await task).release()
        with sqlite3.connect(data / "gateway.db") as db:
            held = db.execute("SELECT COUNT(*) FROM reservations").fetchone()[0]
        assert held == IN_FLIGHT  # the dead process's holds are still there...

        gateway = start_gateway(env, log)  # ...until it starts again
        wait_until_up(port)
    finally:
        if gateway.poll() is None:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(timeout=30)
    upstream_ids = {request.headers["x-client-request-id"] for request in recorded}
    with sqlite3.connect(data / "gateway.db") as db:
        rows = dict(db.execute("SELECT request_id, outcome FROM ledger").fetchall())
        charged = db.execute(
            "SELECT SUM(cost_nanos), SUM(estimate_nanos) FROM ledger WHERE outcome = 'orphaned'"
        ).fetchone()
        assert db.execute("SELECT COUNT(*) FROM reservations").fetchone()[0] == 0
        spent = db.execute(
            "SELECT spent_nanos FROM spend WHERE scope = 'team' AND period = 'total'"
        ).fetchone()[0]
        total = db.execute("SELECT SUM(cost_nanos) FROM ledger").fetchone()[0]
    assert upstream_ids <= set(rows), "an upstream call without its ledger row"
    assert sorted(rows[i] for i in upstream_ids) == ["ok"] * 4 + ["orphaned"] * IN_FLIGHT
    assert charged[0] == charged[1] > 0  # orphans are charged their estimates
    assert spent == total


async def test_a_killed_worker_has_its_holds_settled_by_the_supervisor(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    simulator, data, key, port, env = await set_up(
        tmp_path, aiohttp_server, GATEWAY_WORKERS="2", GATEWAY_CACHE_ENABLED="false"
    )
    supervisor = start_gateway(env, tmp_path / "gateway.log")
    try:
        wait_until_up(port)
        url = f"http://127.0.0.1:{port}/v1/images/generations"
        body = {"model": "gpt-image-1.5", "prompt": "slow", "quality": "low"}
        slow = {"Authorization": f"Bearer {key}", "x-simulator-fault": "slow:4000"}
        connector = aiohttp.TCPConnector(force_close=True)  # fresh connections: both workers
        async with aiohttp.ClientSession(connector=connector) as session:
            in_flight = [
                asyncio.create_task(session.post(url, json={**body, "n": 1}, headers=slow))
                for _ in range(IN_FLIGHT)
            ]
            recorded = simulator[SIMULATOR_STATE].requests
            for _ in range(300):
                if len(recorded) == IN_FLIGHT:
                    break
                await asyncio.sleep(0.05)
            with sqlite3.connect(data / "gateway.db") as db:
                owners = dict(db.execute("SELECT owner, COUNT(*) FROM reservations GROUP BY 1"))
            victim_owner = max(owners, key=lambda owner: owners[owner])
            victim = int(victim_owner.split(":")[1])  # host:pid:start
            assert victim in {c.pid for c in psutil.Process(supervisor.pid).children()}
            os.kill(victim, signal.SIGKILL)
            results = []
            for task in in_flight:
                try:
                    response = await task
                    results.append(response.status)
                    response.release()
                except aiohttp.ClientError:
                    results.append(0)
        # The supervisor settled the dead worker's holds when it restarted it.
        for _ in range(100):
            with sqlite3.connect(data / "gateway.db") as db:
                left = db.execute(
                    "SELECT COUNT(*) FROM reservations WHERE owner = ?", (victim_owner,)
                ).fetchone()[0]
            if left == 0:
                break
            await asyncio.sleep(0.1)
        assert left == 0
    finally:
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(timeout=30)
    upstream_ids = {request.headers["x-client-request-id"] for request in recorded}
    with sqlite3.connect(data / "gateway.db") as db:
        rows = dict(db.execute("SELECT request_id, outcome FROM ledger").fetchall())
        assert db.execute("SELECT COUNT(*) FROM reservations").fetchone()[0] == 0
    assert upstream_ids <= set(rows)
    outcomes = sorted(rows[i] for i in upstream_ids)
    assert outcomes.count("orphaned") == owners[victim_owner] == results.count(0)
    assert outcomes.count("ok") == IN_FLIGHT - owners[victim_owner] == results.count(200)
