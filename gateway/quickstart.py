"""`gateway quickstart` (what `make run` runs): from nothing to a key and a working gateway.

Migrates the store, makes sure a `default` team exists, issues its `quickstart` key (or, on a
later start, rotates it: secrets are kept only as hashes), and serves.
With no `GATEWAY_UPSTREAM_API_KEY` the built-in simulator is served beside the gateway and used
as its upstream, so a newcomer needs no OpenAI account.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import sys
from pathlib import Path

from aiohttp import web

from gateway.accounting.usage_report import usage_report
from gateway.admin import accounts
from gateway.app import create_app
from gateway.runtime.pidfile import pid_file
from gateway.runtime.server import check_can_start, serve_apps
from gateway.settings import Settings
from gateway.store import migrated_store

QUICKSTART_TEAM = "default"


QUICKSTART_KEY_NAME = "quickstart"


async def _issue_quickstart_key(settings: Settings) -> tuple[str, bool]:
    """The quickstart key's secret, and whether it was rotated. Secrets are stored only as
    hashes, so the key of an earlier start cannot be shown again: it is rotated (same key id,
    budgets and history; the old secret stops working) rather than a new key piling up."""
    async with migrated_store(settings.resolved_database_url) as store:
        team = await store.get_team(QUICKSTART_TEAM)
        if team is None:
            team = await accounts.create_team(store, accounts.TeamCreate(name=QUICKSTART_TEAM))
        for key in await store.list_keys(team.id):
            if key.name == QUICKSTART_KEY_NAME and not key.revoked:
                return (await accounts.rotate_key(store, key.id)).secret, True
        issued = await accounts.create_key(
            store, accounts.KeyCreate(team=team.name, name=QUICKSTART_KEY_NAME)
        )
        return issued.secret, False


def as_typed(executable: Path, name: str) -> str:
    """How a person in this directory runs `executable`: by its bare `name` when that is what the
    PATH finds, relative when it lies below the working directory (`.venv/bin/gateway` after
    `make run`), else by its full path."""
    path = os.path.abspath(executable)
    found = shutil.which(name)
    if found is not None and os.path.abspath(found) == path:
        return name
    relative = os.path.relpath(path)
    return relative if not relative.startswith("..") else path


def gateway_command() -> str:
    """The `gateway` command installed beside the Python serving now, as a person types it."""
    script = Path(sys.executable).with_name("gateway")
    if script.exists():
        return as_typed(script, "gateway")
    return f"{as_typed(Path(sys.executable), 'python')} -m gateway"


def banner(base_url: str, key: str, upstream: str, admin_on: bool, rotated: bool = False) -> str:
    fresh = (
        "the quickstart key, rotated: the one printed at the last start no longer works"
        if rotated
        else "the quickstart key, shown once"
    )
    admin = (
        "on (GATEWAY_ADMIN_TOKEN is set): /admin/* with Authorization: Bearer $GATEWAY_ADMIN_TOKEN"
        f";\n  the web console at {base_url}/console (sign in with the admin token)"
        if admin_on
        else "off; set GATEWAY_ADMIN_TOKEN=<a long random token> before starting to turn it on"
        "\n  (and the web console at /console with it)"
    )
    gateway = gateway_command()
    return f"""
Gateway ready on {base_url}  (upstream: {upstream})

A key for team '{QUICKSTART_TEAM}' ({fresh}):
  {key}

Try it with curl:
  curl {base_url}/v1/images/generations \\
    -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
    -d '{{"model": "gpt-image-2", "prompt": "a lighthouse at dawn", "quality": "low"}}'

or with the OpenAI Python SDK (`pip install openai` where you run it), changing only the base URL:
  import base64
  from openai import OpenAI
  client = OpenAI(base_url="{base_url}/v1", api_key="{key}")
  raw = client.images.with_raw_response.generate(model="gpt-image-2", prompt="a lighthouse at dawn")
  with open("lighthouse.png", "wb") as out:
      out.write(base64.b64decode(raw.parse().data[0].b64_json))
  print("saved lighthouse.png; cost $" + raw.headers["x-gateway-cost-usd"])

Asking the same again is answered from the cache at $0 (send Cache-Control: no-cache for a
fresh image). From another terminal in this directory:
  {gateway} keys list            # keys, spend, what is left
  {gateway} usage                # spend by team
  {gateway} keys create --team {QUICKSTART_TEAM} --budget-usd 5
Admin API: {admin}.

Ctrl-C stops it.
"""


async def _quickstart(settings: Settings, simulator_port: int) -> None:
    apps: list[tuple[web.Application, str, int]] = []
    upstream = settings.upstream_url
    if settings.upstream_api_key is None:
        from simulator import SimulatorConfig, create_simulator_app

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
    key, rotated = await _issue_quickstart_key(settings)
    apps.append((create_app(settings), settings.host, settings.port))
    base_url = f"http://{settings.host}:{settings.port}"
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    await serve_apps(
        apps,
        on_ready=banner(base_url, key, upstream, settings.admin_token is not None, rotated),
        grace_s=settings.shutdown_grace_s,
    )
    print(await _what_it_finished(settings, started), flush=True)


async def _what_it_finished(settings: Settings, since: str) -> str:
    """One line for Ctrl-C: what this run served, from the ledger."""
    async with migrated_store(settings.resolved_database_url) as store:
        report = await usage_report(store, since=since, group_by="team")
    total = report.total
    return (
        f"gateway stopped: served {_count(total['requests'], 'request')}"
        f" ({_count(total['images'], 'image')},"
        f" ${total['cost_usd']} charged, ${total['saved_usd']} saved by the cache); every"
        " ledger row is written."
    )


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def quickstart(settings: Settings) -> None:
    """Serve from nothing. A start that cannot serve (a gateway already running from this data
    dir, a port taken) says so in one line and changes nothing: no key, no pid file."""
    ports = [(settings.host, settings.port, "GATEWAY_PORT")]
    if settings.upstream_api_key is None:
        ports.append(("127.0.0.1", settings.simulator_port, "GATEWAY_SIMULATOR_PORT"))
    check_can_start(settings, ports)
    with pid_file(settings):
        asyncio.run(_quickstart(settings, settings.simulator_port))
