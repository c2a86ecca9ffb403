"""Deployment files, exercised as far as this machine allows (no Docker engine, no cluster): the Helm chart
rendered and linted by a real helm (built from its Go module by `make helm`), the compose file, the
Dockerfile and the Grafana dashboards parsed and checked against the settings and the metrics the code
exports; the training dashboard's SQL run on chDB and on the ClickHouse server."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from trackstream import metrics, registry
from trackstream.settings import Settings, Topics
from trackstream.tables import TableStore

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CHART = DEPLOY / "helm" / "trackstream"
HELM = REPO / ".tools" / "helm"


def known_variables() -> set[str]:
    """Every environment variable the settings read (with the MLflow aliases)."""
    out: set[str] = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        if choices:
            out |= {c for c in choices if isinstance(c, str) and c.isupper()}
        else:
            out.add(f"TRACKSTREAM_{name.upper()}")
    out |= {f"TRACKSTREAM_TOPIC_{name.upper()}" for name in Topics.model_fields}
    return out


def helm() -> str:
    found = str(HELM) if HELM.exists() else shutil.which("helm")
    if found is None:
        pytest.fail("helm is needed to render the chart: run `make helm` (builds it from its Go module)", pytrace=False)
    return found


def render(*sets: str) -> list[dict[str, Any]]:
    args = [helm(), "template", "t", str(CHART)]
    for s in sets:
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return list(doc["spec"]["template"]["spec"]["containers"])


def test_helm_lint() -> None:
    out = subprocess.run([helm(), "lint", "--strict", str(CHART)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_chart_renders_every_part_with_known_settings() -> None:
    docs = render()
    kinds = [(d["kind"], d["metadata"]["name"]) for d in docs]
    deployments = {n for k, n in kinds if k == "Deployment"}
    assert deployments == {"t-trackstream-gateway"} | {f"t-trackstream-consume-{s}" for s in registry.NAMES}
    for kind in ("Service", "HorizontalPodAutoscaler", "ConfigMap", "Secret", "Job"):
        assert any(k == kind for k, _ in kinds), kind
    pdbs = {n for k, n in kinds if k == "PodDisruptionBudget"}
    assert pdbs == deployments  # one per Deployment
    known = known_variables()
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    secret = next(d for d in docs if d["kind"] == "Secret")
    assert set(config["data"]) <= known, set(config["data"]) - known
    assert set(secret["stringData"]) <= known, set(secret["stringData"]) - known
    assert "TRACKSTREAM_S3_SECRET_KEY" not in config["data"]  # secrets stay in the Secret
    # the settings model accepts the rendered configuration (as the containers will read it)
    rendered = {**config["data"], **secret["stringData"]}
    fields = {k.removeprefix("TRACKSTREAM_").lower(): v for k, v in rendered.items() if "_TOPIC_" not in k}
    Settings.model_validate(fields)
    for doc in docs:
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        for c in _containers(doc):
            names = {e["name"] for e in c.get("env", [])}
            assert names <= known, (doc["metadata"]["name"], names - known)
            assert not c["image"].endswith(":latest") and ":" in c["image"]
            refs = [next(iter(r.values()))["name"] for r in c["envFrom"]]
            assert refs == [config["metadata"]["name"], secret["metadata"]["name"]]
            if doc["kind"] == "Deployment":
                assert c["livenessProbe"]["httpGet"]["path"] == "/health/live"
                assert c["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    for sink in registry.NAMES:
        doc = next(
            d for d in docs if d["metadata"]["name"] == f"t-trackstream-consume-{sink}" and d["kind"] == "Deployment"
        )
        (c,) = _containers(doc)
        assert c["args"] == ["consume", sink]
        env = {e["name"]: e["value"] for e in c["env"]}
        assert int(env["TRACKSTREAM_METRICS_PORT"]) == c["ports"][0]["containerPort"]
    gateway = next(d for d in docs if d["metadata"]["name"] == "t-trackstream-gateway" and d["kind"] == "Deployment")
    assert "replicas" not in gateway["spec"]  # the HPA owns it


def test_chart_options() -> None:
    docs = render("existingSecret=made-elsewhere", "gateway.autoscaling.enabled=false", "migrate.enabled=false")
    kinds = {d["kind"] for d in docs}
    assert "Secret" not in kinds and "HorizontalPodAutoscaler" not in kinds and "Job" not in kinds
    gateway = next(d for d in docs if d["metadata"]["name"] == "t-trackstream-gateway" and d["kind"] == "Deployment")
    assert gateway["spec"]["replicas"] == 2
    assert _containers(gateway)[0]["envFrom"][1]["secretRef"]["name"] == "made-elsewhere"


def test_compose_is_pinned_healthchecked_and_uses_real_settings() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services: dict[str, Any] = compose["services"]
    known = known_variables()
    for name, svc in services.items():
        image = svc.get("image", "")
        tag = image.rsplit(":", 1)[1] if ":" in image else ""
        assert tag and tag != "latest" and (re.search(r"\d", tag) or image == "trackstream:local"), (name, image)
        if name != "migrate":
            check = svc.get("healthcheck", {})
            assert check.get("test") and not check.get("disable"), name
        for var in svc.get("environment", {}) or {}:
            if var.startswith("TRACKSTREAM_"):
                assert var in known, (name, var)
    for sink in registry.NAMES:
        svc = services[f"consume-{sink}"]
        assert svc["command"] == ["consume", sink]
        assert svc["environment"]["TRACKSTREAM_METRICS_PORT"]
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    assert targets == {"gateway:5000"} | {f"consume-{s}:9464" for s in registry.NAMES}
    assert prometheus["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in services["prometheus"]["volumes"]
    for volume in services["grafana"]["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("."):  # a file of the repository, not a named volume
            assert (DEPLOY / source).exists(), source


def test_dockerfile_layers_user_data_dir_and_healthcheck() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    base = next(line for line in lines if line.startswith("FROM "))
    assert re.match(r"FROM python:3\.11\.\d+-slim-\w+$", base), base
    copies = [i for i, line in enumerate(lines) if line.startswith("COPY ")]
    install = next(i for i, line in enumerate(lines) if "pip install -r" in line)
    assert lines[copies[0]] == "COPY pyproject.toml ./" and copies[0] < install < copies[1]  # dependency layer
    assert any(line.startswith("USER trackstream") for line in lines)
    assert "chown -R trackstream:trackstream /var/lib/trackstream" in text
    assert "TRACKSTREAM_DATA_DIR=/var/lib/trackstream/data" in text
    assert re.search(r'HEALTHCHECK .*CMD \["trackstream", "probe", "live"\]', text)
    known = known_variables()
    assert set(re.findall(r"\b(TRACKSTREAM_[A-Z_]+)=", text)) <= known


def _exported() -> set[str]:
    """Every sample name the code can export (histograms and counters with their suffixes)."""
    names: set[str] = set()
    for value in vars(metrics).values():
        describe = getattr(value, "describe", None)
        if callable(describe) and hasattr(value, "_name"):
            for family in describe():
                base = family.name
                names |= {base, f"{base}_total", f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    names |= {"trackstream_sink_consumer_lag_messages", "trackstream_sink_last_commit_age_seconds",
              "trackstream_sink_store_available", "trackstream_sink_partitions_held"}  # fmt: skip
    return names


def test_pipeline_dashboard_uses_exported_metrics() -> None:
    board = json.loads((DEPLOY / "grafana" / "dashboards" / "pipeline.json").read_text())
    exported = _exported()
    used = {m for p in board["panels"] for t in p["targets"] for m in re.findall(r"trackstream_\w+", t["expr"])}
    assert used and used <= exported, used - exported
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


MACROS = {
    "$__interval_ms": "60000",
    "$__fromTime": "toDateTime(1700000000)",
    "$__toTime": "toDateTime(1800000000)",
    "${metric}": "loss",
    "${run:singlequote}": "'r1', 'r2'",
    "${experiment}": "0",
}


def _training_queries() -> list[str]:
    board = json.loads((DEPLOY / "grafana" / "dashboards" / "training.json").read_text())
    queries = [v["query"] for v in board["templating"]["list"]]
    queries += [t["rawSql"] for p in board["panels"] for t in p["targets"]]
    out = []
    for q in queries:
        for macro, value in MACROS.items():
            q = q.replace(macro, value)
        assert "$" not in q, q
        out.append(q)
    return out


def _run_all(tables: TableStore) -> None:
    tables.migrate()
    for q in _training_queries():
        tables.query(q)


def test_training_dashboard_sql_runs_on_chdb(tmp_path: Path) -> None:
    from trackstream.tables.chdb import ChdbStore

    store = ChdbStore(tmp_path / "chdb")
    try:
        _run_all(store)
    finally:
        store.close()


def test_training_dashboard_sql_runs_on_the_clickhouse_server(clickhouse_url: str) -> None:
    from trackstream.tables.clickhouse import ClickHouseStore

    store = ClickHouseStore(clickhouse_url)
    try:
        _run_all(store)
    finally:
        store.close()


def test_alert_rules_name_only_metrics_the_code_exports() -> None:
    rules = [
        r for g in yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"] for r in g["rules"]
    ]
    assert rules and all(r["alert"] and r["expr"] and r["annotations"]["summary"] for r in rules)
    exported = _exported()
    for rule in rules:
        named = set(re.findall(r"trackstream_\w+", rule["expr"]))
        assert named and named <= exported, (rule["alert"], named - exported)
