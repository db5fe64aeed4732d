"""Gateway replicas as real processes: `gateway serve` started N times on one PostgreSQL (and, if
given, one Redis), each on its own port with its own data directory, as a deployment runs them.

`async with Replicas(3, env) as replicas:` starts them, waits until each answers `/healthz`, and
kills them on the way out. `replicas.sdk(i, key)` is the official SDK pointed at replica i."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import openai

from tests.e2e.test_shutdown import free_port


def replica_environment(**settings: str) -> dict[str, str]:
    """This process's environment without any GATEWAY_ setting of its own, plus `settings`
    (names without the GATEWAY_ prefix, lower case: `database_url="postgresql://…"`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env | {f"GATEWAY_{name.upper()}": value for name, value in settings.items()}


class Replicas:
    """`count` `gateway serve` processes sharing `env`; replica i keeps its data in `root/r<i>`."""

    def __init__(self, count: int, env: dict[str, str], root: Path) -> None:
        self.ports = [free_port() for _ in range(count)]
        self._env = env
        self._root = root
        self.processes: list[asyncio.subprocess.Process] = []
        self._sdks: list[openai.AsyncOpenAI] = []

    async def __aenter__(self) -> Replicas:
        for i, port in enumerate(self.ports):
            own = {"GATEWAY_PORT": str(port), "GATEWAY_DATA_DIR": str(self._root / f"r{i}")}
            self.processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "gateway", "serve", env=self._env | own,
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                )
            )  # fmt: skip
        await asyncio.gather(*(self._until_up(port) for port in self.ports))
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        for sdk in self._sdks:
            await sdk.close()
        for process in self.processes:
            if process.returncode is None:
                process.kill()
            await process.wait()

    def url(self, i: int, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[i]}{path}"

    def sdk(self, i: int, key: str) -> openai.AsyncOpenAI:
        url = self.url(i, "/v1")
        sdk = openai.AsyncOpenAI(base_url=url, api_key=key, max_retries=0, timeout=60)
        self._sdks.append(sdk)
        return sdk

    async def admin(self, i: int, method: str, path: str, token: str, **json: Any) -> Any:
        """One admin API call on replica i; its JSON answer (raises on a non-2xx status)."""
        async with aiohttp.ClientSession() as session, session.request(
            method, self.url(i, path), json=json or None,
            headers={"Authorization": f"Bearer {token}"},
        ) as response:  # fmt: skip
            response.raise_for_status()
            return await response.json()

    async def _until_up(self, port: int, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if any(p.returncode is not None for p in self.processes):
                    raise AssertionError("a replica exited while starting")
                assert time.monotonic() < deadline, f"replica on {port} never came up"
                await asyncio.sleep(0.05)
