"""deploy/: every file parses, the pieces agree with each other, and every metric name the
dashboard and the alert rules use is one the gateway exports (taken from a live `/metrics`)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.settings import Settings

# Starts the servers it tests itself (or needs no fixture's database): run once, not again on
# PostgreSQL.
pytestmark = pytest.mark.one_pass

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
METRIC_NAME = re.compile(r"(?<![A-Za-z0-9_:])gateway_[a-z0-9_]+")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


@pytest.fixture
async def exported(gateway: Any) -> set[str]:
    """Every sample name the gateway's /metrics can carry (families without samples yet are
    described there too)."""
    text = await (await gateway.get("/metrics")).text()
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    return names


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_expressions() -> dict[str, str]:
    rules = load_yaml(DEPLOY / "prometheus" / "alerts.yml")
    return {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (DEPLOY / "grafana" / "dashboards" / "images-gateway.json").read_text()
    )
    return data


def dashboard_panels() -> list[dict[str, Any]]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def test_the_exported_names_are_what_the_reference_lists(exported: set[str]) -> None:
    assert {"gateway_requests_total", "gateway_budget_remaining_usd"} <= exported
    reference = (ROOT / "docs" / "operations.md").read_text()
    families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in exported}
    missing = sorted(name for name in families if f"`{name}" not in reference)
    assert missing == [], "metrics docs/operations.md does not list"


def test_alert_rules_use_only_exported_metrics(exported: set[str]) -> None:
    expressions = alert_expressions()
    assert {
        "GatewayTeamBudgetNearlyExhausted",
        "GatewayUpstreamErrorRatioHigh",
        "GatewayP99LatencyHigh",
        "GatewayCacheNearLimit",
    } <= set(expressions)
    for alert, expr in expressions.items():
        used = set(METRIC_NAME.findall(expr))
        assert used or "up{" in expr, alert
        assert used <= exported, (alert, used - exported)


def test_dashboard_panels_query_only_exported_metrics(exported: set[str]) -> None:
    panels = dashboard_panels()
    titles = {panel["title"] for panel in panels}
    for wanted in ("Spend rate", "Budget remaining", "Cache hit ratio", "Dollars saved"):
        assert any(title.startswith(wanted) for title in titles), wanted
    assert any("first stream event" in title for title in titles)
    assert any("Refusals" in title for title in titles)
    assert any("Upstream errors" in title for title in titles)
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = set(METRIC_NAME.findall(target["expr"]))
            assert used, (panel["title"], target["expr"])
            assert used <= exported, (panel["title"], used - exported)
            assert target["datasource"]["uid"] == panel["datasource"]["uid"]
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids))


def test_grafana_provisioning_points_at_the_dashboard_and_the_datasource() -> None:
    datasources = load_yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")
    (source,) = datasources["datasources"]
    assert {panel["datasource"]["uid"] for panel in dashboard_panels()} == {source["uid"]}
    assert source["url"] == "http://prometheus:9090"
    providers = load_yaml(DEPLOY / "grafana/provisioning/dashboards/dashboards.yml")
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_compose_wires_gateway_prometheus_and_grafana() -> None:
    compose = load_yaml(DEPLOY / "docker-compose.yml")
    services = compose["services"]
    assert {"gateway", "prometheus", "grafana"} <= set(services)
    for service in services.values():  # every file a service mounts is in the repository
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), source
    mounts = {v.split(":")[1] for v in services["grafana"]["volumes"]}
    assert {"/etc/grafana/provisioning", "/var/lib/grafana/dashboards"} <= mounts
    gateway = services["gateway"]
    assert (ROOT / gateway["build"]["context"].replace("..", ".") / "deploy/Dockerfile").exists()
    assert gateway["ports"] == ["8080:8080"]
    prometheus = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    (job,) = prometheus["scrape_configs"]
    assert job["static_configs"][0]["targets"] == ["gateway:8080"]
    assert job["metrics_path"] == "/metrics"
    assert prometheus["rule_files"] == ["alerts.yml"]
    # The alerts name the scrape job they watch.
    assert f'job="{job["job_name"]}"' in alert_expressions()["GatewayDown"]


def test_dockerfile_runs_unprivileged_with_a_volume_and_a_healthcheck() -> None:
    lines = [
        line.strip()
        for line in (DEPLOY / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    instructions = [line.split()[0] for line in lines if line.split()[0].isupper()]
    assert "HEALTHCHECK" in instructions and "VOLUME" in instructions
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert instructions.index("USER") < instructions.index("CMD")
    for line in lines:  # what is copied from the repository is there
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
    # The image runs the package as `pip install .` makes it (a wheel), not the source tree.
    assert any(line.startswith("RUN pip wheel") for line in lines)
    assert any(line.startswith("RUN pip install /wheels/") for line in lines)
    assert not any("--editable" in line or "install -e" in line for line in lines)
    assert any("/healthz" in line for line in lines)
    # The image serves on every interface: the gateway's own default is loopback.
    assert any("GATEWAY_HOST=0.0.0.0" in line for line in lines)


def kubernetes() -> dict[str, dict[str, Any]]:
    kustomization = load_yaml(DEPLOY / "kubernetes" / "kustomization.yaml")
    documents = {}
    for name in kustomization["resources"]:
        for document in yaml.safe_load_all((DEPLOY / "kubernetes" / name).read_text()):
            documents[document["kind"]] = document
    return documents


def test_kubernetes_manifests_agree_with_each_other() -> None:
    manifests = kubernetes()
    assert set(manifests) == {
        "ConfigMap",
        "Secret",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
        "ServiceMonitor",
    }
    deployment, service = manifests["Deployment"], manifests["Service"]
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    (port,) = container["ports"]
    config = manifests["ConfigMap"]["data"]
    assert port["containerPort"] == int(config["GATEWAY_PORT"])
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    labels = pod["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    monitor = manifests["ServiceMonitor"]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["endpoints"][0]["path"] == "/metrics"
    # SIGTERM's grace fits in the pod's, after the preStop pause.
    grace = float(config["GATEWAY_SHUTDOWN_GRACE_S"])
    pause = float(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["spec"]["terminationGracePeriodSeconds"] > grace + pause
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    assert mounts["data"] == config["GATEWAY_DATA_DIR"]
    claims = [v for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v]
    assert (
        claims[0]["persistentVolumeClaim"]["claimName"]
        == (manifests["PersistentVolumeClaim"]["metadata"]["name"])
    )
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    # Secrets come from the Secret, and every setting named is a real one.
    secret_names = set(manifests["Secret"]["stringData"])
    assert secret_names == {"GATEWAY_UPSTREAM_API_KEY", "GATEWAY_ADMIN_TOKEN"}
    known = {f"GATEWAY_{name.upper()}" for name in Settings.model_fields}
    assert set(config) | secret_names <= known


KNOWN_SETTINGS = {f"GATEWAY_{name.upper()}" for name in Settings.model_fields}


def test_compose_replicas_share_one_store_one_redis_and_one_cache_behind_nginx() -> None:
    compose = load_yaml(DEPLOY / "docker-compose.replicas.yml")
    services = compose["services"]
    gateways = {name: s for name, s in services.items() if name.startswith("gateway-")}
    assert len(gateways) == 3
    environments = [s["environment"] for s in gateways.values()]
    assert all(env == environments[0] for env in environments)  # one configuration for all
    env = environments[0]
    assert {name for name in env if name.startswith("GATEWAY_")} <= KNOWN_SETTINGS
    assert (
        env["GATEWAY_DATABASE_URL"].startswith("postgresql://")
        and "@postgres:" in env["GATEWAY_DATABASE_URL"]
    )
    assert env["GATEWAY_REDIS_URL"] == "redis://redis:6379/0"
    assert env["GATEWAY_CACHE_STORE"].startswith("s3://gateway-cache/")
    assert env["GATEWAY_CACHE_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert "local/gateway-cache" in " ".join(services["bucket"]["command"])  # the bucket is made
    for gateway in gateways.values():
        assert gateway["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert gateway["depends_on"]["bucket"]["condition"] == "service_completed_successfully"
    assert {"postgres", "redis", "minio", "simulator", "loadbalancer"} <= set(services)
    nginx = (DEPLOY / "nginx" / "replicas.conf").read_text()
    upstreams = set(re.findall(r"server (gateway-\d):8080", nginx))
    assert upstreams == set(gateways)
    assert "proxy_buffering off" in nginx  # streams pass as they arrive
    assert services["loadbalancer"]["ports"] == ["8080:8080"]


def test_the_kubernetes_replicas_overlay_runs_three_pods_on_shared_services() -> None:
    overlay = DEPLOY / "kubernetes-replicas"
    kustomization = load_yaml(overlay / "kustomization.yaml")
    assert "../kubernetes" in kustomization["resources"]
    base = kubernetes()
    patches = {p.get("path"): p for p in kustomization["patches"]}
    deployment = load_yaml(overlay / patches["deployment-patch.yaml"]["path"])
    assert deployment["metadata"]["name"] == base["Deployment"]["metadata"]["name"]
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] is None  # the SQLite volume goes
    assert "emptyDir" in volumes["data"]
    deleted = [yaml.safe_load(p["patch"]) for p in kustomization["patches"] if "patch" in p]
    (removed,) = [d for d in deleted if d.get("$patch") == "delete"]
    assert removed["metadata"]["name"] == base["PersistentVolumeClaim"]["metadata"]["name"]
    secret = load_yaml(overlay / "secret-patch.yaml")
    assert secret["metadata"]["name"] == base["Secret"]["metadata"]["name"]
    values = secret["stringData"]
    assert values["GATEWAY_DATABASE_URL"].startswith("postgresql://")
    assert values["GATEWAY_REDIS_URL"].startswith("redis://")
    assert values["GATEWAY_CACHE_STORE"].startswith("s3://")
    assert {name for name in values if name.startswith("GATEWAY_")} <= KNOWN_SETTINGS
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(values)


def test_the_helm_chart_reads_only_values_it_declares() -> None:
    chart = DEPLOY / "helm" / "images-gateway"
    values = load_yaml(chart / "values.yaml")
    scaled = load_yaml(chart / "values-scaled.yaml")
    assert values["mode"] == "embedded" and scaled["mode"] == "scaled"
    assert set(scaled) <= set(values)  # the scaled example overrides declared values only
    used = set()
    for template in (chart / "templates").glob("*"):
        used |= set(re.findall(r"\.Values\.([A-Za-z0-9_.]+)", template.read_text()))
    assert used, "the templates read values"
    for path in used:
        node: Any = values
        for part in path.split("."):
            assert isinstance(node, dict) and part in node, f".Values.{path} is not declared"
            node = node[part]
    assert set(values["settings"]) <= KNOWN_SETTINGS
    deployment = (chart / "templates" / "deployment.yaml").read_text()
    assert "type: Recreate" in deployment and "type: RollingUpdate" in deployment
    secret = (chart / "templates" / "secret.yaml").read_text()
    assert "GATEWAY_DATABASE_URL" in secret and "GATEWAY_REDIS_URL" in secret


def database_connections(pods: int, surge: int, workers: int, pool: int) -> int:
    """PostgreSQL connections the gateway may hold at the peak of a rolling update."""
    return (pods + surge) * workers * pool


def test_the_scaled_deployments_fit_the_database_connections() -> None:
    """Replicas x workers x pool (plus the pod a rolling update adds) stays under PostgreSQL's
    default max_connections (100), for the overlay and the chart's values as shipped."""
    overlay = DEPLOY / "kubernetes-replicas"
    kustomization = load_yaml(overlay / "kustomization.yaml")
    patched = [yaml.safe_load(p["patch"]) for p in kustomization["patches"] if "patch" in p]
    (config,) = [p["data"] for p in patched if p.get("kind") == "ConfigMap"]
    deployment = load_yaml(overlay / "deployment-patch.yaml")["spec"]
    surge = deployment["strategy"]["rollingUpdate"]["maxSurge"]
    peak = database_connections(
        deployment["replicas"], surge, int(config["GATEWAY_WORKERS"]),
        int(config["GATEWAY_DATABASE_POOL_SIZE"]),
    )  # fmt: skip
    assert peak <= 100, peak
    assert "$retainKeys" not in (overlay / "deployment-patch.yaml").read_text()  # strict schemas

    chart = DEPLOY / "helm" / "images-gateway"
    values = load_yaml(chart / "values.yaml") | load_yaml(chart / "values-scaled.yaml")
    database = load_yaml(chart / "values.yaml")["database"]
    peak = database_connections(values["replicas"], 1, values["workers"], database["poolSize"])
    assert peak <= database["maxConnections"] <= 100
    config_template = (chart / "templates" / "configmap.yaml").read_text()
    assert "fail" in config_template and "GATEWAY_DATABASE_POOL_SIZE" in config_template


def strategic_merge(base: Any, patch: Any) -> Any:
    """Kubernetes' strategic merge, as far as the overlay's Deployment patch uses it: maps merge
    key by key (a null deletes), lists of named items merge by name, other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = strategic_merge(base.get(key), value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and all("name" in i for i in patch):
        by_name = {item["name"]: item for item in base}
        for item in patch:
            by_name[item["name"]] = strategic_merge(by_name.get(item["name"]), item)
        return list(by_name.values())
    return patch


def test_the_manifests_pass_strict_kubernetes_schemas() -> None:
    """Every base object, and the overlay's Deployment as kustomize renders it, validate against
    the Kubernetes schemas with unknown fields refused (kubernetes-validate --strict)."""
    import kubernetes_validate

    version = "1.32.0"
    base = kubernetes()
    for kind, document in base.items():
        if kind == "ServiceMonitor":
            continue  # a CRD: the prometheus-operator's schema, not Kubernetes'
        kubernetes_validate.validate(document, version, strict=True)
    patch = load_yaml(DEPLOY / "kubernetes-replicas" / "deployment-patch.yaml")
    rendered = strategic_merge(base["Deployment"], patch)
    kubernetes_validate.validate(rendered, version, strict=True)
    broken = strategic_merge(rendered, {"spec": {"strategy": {"$retainKeys": ["type"]}}})
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)
