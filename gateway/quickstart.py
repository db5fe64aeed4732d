"""`gateway quickstart` (what `make run` runs): from nothing to a key and a working gateway.

Migrates the store, makes sure a `default` team exists, issues a fresh key for it, and serves.
With no `GATEWAY_UPSTREAM_API_KEY` the built-in simulator is served beside the gateway and used
as its upstream, so a newcomer needs no OpenAI account.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway import accounts
from gateway.app import create_app
from gateway.server import pid_file, serve_apps
from gateway.settings import Settings
from gateway.store import migrated_store

QUICKSTART_TEAM = "default"


async def _issue_quickstart_key(settings: Settings) -> str:
    async with migrated_store(settings.resolved_database_url) as store:
        team = await store.get_team(QUICKSTART_TEAM)
        if team is None:
            team = await accounts.create_team(store, accounts.TeamCreate(name=QUICKSTART_TEAM))
        issued = await accounts.create_key(
            store, accounts.KeyCreate(team=team.name, name="quickstart")
        )
        return issued.secret


def banner(base_url: str, key: str, upstream: str) -> str:
    return f"""
Gateway ready on {base_url}  (upstream: {upstream})

A key for team '{QUICKSTART_TEAM}' (shown once; make more with `gateway keys create`):
  {key}

Try it with curl:
  curl {base_url}/v1/images/generations \\
    -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
    -d '{{"model": "gpt-image-2", "prompt": "a lighthouse at dawn", "quality": "low"}}'

or with the OpenAI Python SDK, changing only the base URL:
  from openai import OpenAI
  client = OpenAI(base_url="{base_url}/v1", api_key="{key}")
  result = client.images.generate(model="gpt-image-2", prompt="a lighthouse at dawn")

Ctrl-C stops it.
"""


async def _quickstart(settings: Settings, simulator_port: int) -> None:
    apps: list[tuple[web.Application, str, int]] = []
    upstream = settings.upstream_url
    if settings.upstream_api_key is None:
        from gateway.simulator import SimulatorConfig, create_simulator_app

        sim_url = f"http://127.0.0.1:{simulator_port}/v1"
        settings = settings.model_copy(update={"upstream_url": sim_url})
        apps.append(
            (
                create_simulator_app(SimulatorConfig(latency_ms=200, partial_interval_ms=150)),
                "127.0.0.1",
                simulator_port,
            )
        )
        upstream = f"built-in simulator at {sim_url}; set GATEWAY_UPSTREAM_API_KEY for OpenAI"
    key = await _issue_quickstart_key(settings)
    apps.append((create_app(settings), settings.host, settings.port))
    base_url = f"http://{settings.host}:{settings.port}"
    await serve_apps(
        apps, on_ready=banner(base_url, key, upstream), grace_s=settings.shutdown_grace_s
    )


def quickstart(settings: Settings, simulator_port: int = 8090) -> None:
    with pid_file(settings):
        asyncio.run(_quickstart(settings, simulator_port))
