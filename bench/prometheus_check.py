"""Check the dashboard and the alert rules against a real Prometheus scraping a real gateway.

Starts the simulator, a gateway and `prometheus` (Debian's package, or any on PATH) in a
temporary directory; drives traffic with the openai SDK (misses, hits, a stream, refusals,
upstream errors, a purge); lets Prometheus scrape for a few seconds; then runs every query of
the dashboard (`$__range` as 5m) and every alert expression through Prometheus' HTTP API and
prints how many series each returns. Exits 1 if a query fails, a dashboard query returns
nothing, or a rule is unhealthy.

Run: .venv/bin/python bench/prometheus_check.py
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import openai
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    HOST,
    ROOT,
    Server,
    clean_env,
    free_port,
    gateway_command,
    run_cli,
    start_server,
    stop_server,
    wait_ready,
)

DEPLOY = ROOT / "deploy"
ADMIN = "check-admin-token"
LOW = {"model": "gpt-image-1", "quality": "low", "size": "1024x1024"}


def get_json(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def drive_traffic(port: int, keys: dict[str, str]) -> None:
    def client(key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"http://{HOST}:{port}/v1", api_key=key, max_retries=0)

    rich, poor = client(keys["rich"]), client(keys["poor"])
    for prompt in ("a lighthouse", "a harbour", "a lighthouse", "a lighthouse"):
        rich.images.generate(prompt=prompt, **LOW)
    for _ in rich.images.generate(prompt="a gull", stream=True, partial_images=2, **LOW):
        pass
    for fault in ("error:500", "error:429", "cut:1"):
        try:
            response = rich.images.generate(
                prompt=f"trouble {fault}",
                stream=fault.startswith("cut"),
                partial_images=2,
                **LOW,
                extra_headers={"x-simulator-fault": fault},
            )
            for _ in response:  # type: ignore[union-attr]
                pass
        except openai.APIError:
            pass
    for bad in (poor, client("sk-gw-wrong")):
        with contextlib.suppress(openai.APIError):
            bad.images.generate(prompt="refused", **LOW)
    get_json(
        f"http://{HOST}:{port}/admin/cache/purge",
        data=json.dumps({"team": "rich"}).encode(),
        headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
    )


def queries() -> list[tuple[str, str, bool]]:
    """(where, expression, must return series)."""
    board = json.loads((DEPLOY / "grafana/dashboards/images-gateway.json").read_text())
    found = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__range", "5m")
            found.append((f"panel {panel['title']!r}", expr, True))
    rules = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            found.append((f"alert {rule['alert']}", rule["expr"], False))
    return found


def main() -> int:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        print("no `prometheus` on PATH (Debian: apt-get install prometheus)")
        return 2
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="gw-prom-") as tmp_name:
        tmp = Path(tmp_name)
        sim_port, gw_port, prom_port = free_port(), free_port(), free_port()
        env = clean_env(
            GATEWAY_DATA_DIR=str(tmp / "data"),
            GATEWAY_PORT=str(gw_port),
            GATEWAY_UPSTREAM_URL=f"http://{HOST}:{sim_port}/v1",
            GATEWAY_ADMIN_TOKEN=ADMIN,
            GATEWAY_WORKERS="2",
        )
        keys = {}
        for team, budget in {"rich": "100", "poor": "0.01"}.items():
            run_cli(["teams", "create", team, "--budget-usd", budget], env)
            keys[team] = run_cli(["keys", "create", "--team", team], env).strip().splitlines()[-1]
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(DEPLOY / "prometheus/alerts.yml")],
            "scrape_configs": [
                {
                    "job_name": "images-gateway",
                    "static_configs": [{"targets": [f"{HOST}:{gw_port}"]}],
                }
            ],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        prometheus_argv = [
            prometheus,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address={HOST}:{prom_port}",
        ]
        try:
            for name, argv, port, ready in (
                (
                    "simulator",
                    gateway_command("simulator", "--port", str(sim_port)),
                    sim_port,
                    None,
                ),
                ("gateway", gateway_command("serve"), gw_port, "/healthz"),
                ("prometheus", prometheus_argv, prom_port, "/-/ready"),
            ):
                servers.append(start_server(name, argv, port, env, tmp))
                wait_ready(servers[-1], ready)
            time.sleep(2)  # a first scrape before the traffic, so rates have a start
            drive_traffic(gw_port, keys)
            time.sleep(8)
            return check(f"http://{HOST}:{prom_port}")
        finally:
            for server in reversed(servers):
                stop_server(server)


def check(base: str) -> int:
    failures = 0
    for where, expr, must_have_series in queries():
        query = urllib.parse.urlencode({"query": expr})
        try:
            answer = get_json(f"{base}/api/v1/query?{query}")
        except urllib.error.HTTPError as exc:
            print(f"FAIL  {where}: {exc.read().decode()}")
            failures += 1
            continue
        series = len(answer["data"]["result"])
        empty = must_have_series and series == 0
        failures += empty
        print(f"{'FAIL' if empty else 'ok  '}  {series:3d} series  {where}: {expr.strip()[:90]}")
    rules = get_json(f"{base}/api/v1/rules")["data"]["groups"][0]["rules"]
    for rule in rules:
        healthy = rule["health"] == "ok"
        failures += not healthy
        print(
            f"{'ok  ' if healthy else 'FAIL'}  rule {rule['name']}: health {rule['health']},"
            f" state {rule['state']}"
        )
    print(f"{failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
