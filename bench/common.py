"""Shared benchmark helpers: start the simulator and the gateway, issue a key, stop them cleanly.

Every server runs in its own process (`python -m gateway ...`), listening on a free loopback port,
with a fresh temporary data dir. The benchmark client is the calling script itself, so the client
never shares a process (or an event loop) with either server.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
PYTHON = sys.executable
HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
CLI_TIMEOUT_S = 60.0


def free_port() -> int:
    """A port that was free a moment ago on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**overrides: str) -> dict[str, str]:
    """The current environment without any inherited GATEWAY_* setting, plus `overrides`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(overrides)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_problems(self) -> list[str]:
        """Log lines that mention an error, a warning or a traceback."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        words = ("ERROR", "WARNING", "Traceback", "Exception")
        return [line for line in text.splitlines() if any(w in line for w in words)]

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def gateway_command(*args: str) -> list[str]:
    return [PYTHON, "-m", "gateway", *args]


def start_server(
    name: str,
    argv: Sequence[str],
    port: int,
    env: dict[str, str],
    log_dir: Path,
    cwd: Path = ROOT,
) -> Server:
    """Start `argv` (in `cwd`) with its output going to a log file in `log_dir`."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return Server(name, proc, port, log_path)


def wait_ready(server: Server, path: str | None, timeout_s: float = START_TIMEOUT_S) -> None:
    """Wait until `path` answers 200 (or, with no path, until the port accepts connections)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.proc.returncode}:\n{server.log_tail()}"
            )
        try:
            if path is None:
                with socket.create_connection((HOST, server.port), timeout=1.0):
                    return
            else:
                with urllib.request.urlopen(server.base_url + path, timeout=1.0) as resp:
                    if resp.status == 200:
                        return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{server.name} not ready after {timeout_s} s:\n{server.log_tail()}")


def start_simulator(log_dir: Path, *args: str) -> Server:
    """The simulator on a free port (its log in `log_dir`), once it accepts connections."""
    port = free_port()
    argv = gateway_command("simulator", "--host", HOST, "--port", str(port), *args)
    server = start_server("simulator", argv, port, clean_env(), log_dir)
    wait_ready(server, None)
    return server


def stop_server(server: Server) -> None:
    """SIGTERM, then SIGKILL if it has not exited within STOP_TIMEOUT_S."""
    if server.proc.poll() is not None:
        return
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=STOP_TIMEOUT_S)


def run_cli(args: Sequence[str], env: dict[str, str], cwd: Path = ROOT) -> str:
    """Run `python -m gateway <args>` (in `cwd`) to completion and return its stdout."""
    done = subprocess.run(
        gateway_command(*args),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"gateway {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def create_key(
    env: dict[str, str], team: str = "bench", team_args: Sequence[str] = (), cwd: Path = ROOT
) -> str:
    """Create a team and a key for it through the CLI; the key is the last line printed."""
    run_cli(["teams", "create", team, *team_args], env, cwd)
    key = run_cli(["keys", "create", "--team", team], env, cwd).strip().splitlines()[-1].strip()
    if not key.startswith("sk-gw-"):
        raise RuntimeError(f"unexpected key output: {key!r}")
    return key


@dataclass
class Stack:
    """A running simulator and a gateway in front of it, with a key for the gateway."""

    simulator: Server
    gateway: Server
    key: str
    tmp_dir: Path  # logs, and the gateway's data dir below it

    @property
    def gateway_data_dir(self) -> Path:
        return self.tmp_dir / "data"

    @property
    def sim_url(self) -> str:
        return self.simulator.base_url + "/v1"

    @property
    def gw_url(self) -> str:
        return self.gateway.base_url + "/v1"


@contextlib.contextmanager
def running_stack(
    simulator_args: Sequence[str] = (), gateway_env: dict[str, str] | None = None
) -> Iterator[Stack]:
    """Start the simulator (with `simulator_args`) and the gateway (with `gateway_env` added to
    its environment); stop both on exit."""
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="gw-bench-") as tmp:
        tmp_dir = Path(tmp)
        try:
            sim_port = free_port()
            args = ["simulator", "--host", HOST, "--port", str(sim_port), *simulator_args]
            sim = start_server("simulator", gateway_command(*args), sim_port, clean_env(), tmp_dir)
            servers.append(sim)
            wait_ready(sim, None)

            gw_port = free_port()
            env = clean_env(
                GATEWAY_HOST=HOST,
                GATEWAY_PORT=str(gw_port),
                GATEWAY_UPSTREAM_URL=f"http://{HOST}:{sim_port}/v1",
                GATEWAY_DATA_DIR=str(tmp_dir / "data"),
                **(gateway_env or {}),
            )
            key = create_key(env)
            gw = start_server("gateway", gateway_command("serve"), gw_port, env, tmp_dir)
            servers.append(gw)
            wait_ready(gw, "/healthz")
            yield Stack(sim, gw, key, tmp_dir)
        finally:
            for server in reversed(servers):
                stop_server(server)


# The proxy benchmarks repeat one request; with the cache on they would measure hits. Misses
# are what they measure; bench/cache.py measures the cache.
CACHE_OFF = {"GATEWAY_CACHE_ENABLED": "false"}


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(values_s: Sequence[float]) -> dict[str, float]:
    """n, p50, p90, p99 and max of durations given in seconds, in milliseconds."""
    ms = [v * 1000.0 for v in values_s]
    return {
        "n": len(ms),
        "p50": round(percentile(ms, 50), 4),
        "p90": round(percentile(ms, 90), 4),
        "p99": round(percentile(ms, 99), 4),
        "max": round(max(ms), 4),
    }


def source_fingerprint() -> str:
    """SHA-256 over gateway/**/*.py as they are now (others edit the tree while we measure)."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def environment() -> dict[str, Any]:
    """What the numbers were measured on."""
    import aiohttp

    return {
        "gateway_source_sha256": source_fingerprint(),
        "time_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    """Write `data` (with the environment added) to bench/results/<name>.json."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({"environment": environment(), **data}, indent=2) + "\n")
    return path
