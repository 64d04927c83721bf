"""The deployment artifacts in deploy/: structure, and metric names that the server exports.

Docker is not available where these tests run, so the compose stack is checked for structure
only: the files parse, the services are wired to each other, and every metric that the
Grafana dashboard and the Prometheus alerts query is one that execord/server/_metrics.py
exports (METRIC_NAMES).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from execord.server._metrics import METRIC_NAMES

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
DASHBOARD = DEPLOY / "grafana" / "execord.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
COMPOSE = DEPLOY / "docker-compose.yml"
NGINX = DEPLOY / "nginx.conf"

REPLICAS = ("execord-1", "execord-2")
REQUIRED_ALERTS = (
    "ExecordFailureRateSpike",
    "ExecordPendingApprovalBacklog",
    "ExecordConnectorErrorSpike",
    "ExecordInterruptedExecutions",
    "ExecordIngestRejections",
)

_METRIC = re.compile(r"(?<![A-Za-z0-9_:])execord_[a-z0-9_]+")
_HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


# -- the metric-name check --------------------------------------------------------------------


def metric_names(expr: str) -> set[str]:
    """The execord metric names an expression queries, with histogram series folded in.

    ``execord_x_seconds_bucket`` (and ``_sum``, ``_count``) is the histogram
    ``execord_x_seconds`` when that is an exported histogram; anything else is kept as written.
    """
    names = set()
    for name in _METRIC.findall(expr):
        for suffix in _HISTOGRAM_SERIES:
            base = name.removesuffix(suffix)
            if base != name and base.endswith("_seconds") and base in METRIC_NAMES:
                name = base
                break
        names.add(name)
    return names


def unknown_metrics(exprs: Iterable[tuple[str, str]]) -> list[str]:
    """For (where, expr) pairs, one message per metric name the server does not export."""
    return [
        f"{where}: {name} is not in execord.server._metrics.METRIC_NAMES"
        for where, expr in exprs
        for name in sorted(metric_names(expr))
        if name not in METRIC_NAMES
    ]


def _balanced(expr: str) -> bool:
    """Brackets close in order (outside quoted strings): a cheap PromQL sanity check."""
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for ch in re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr):
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs and (not stack or stack.pop() != pairs[ch]):
            return False
    return not stack


def test_check_reports_an_unknown_metric() -> None:
    problems = unknown_metrics([("panel 'Fake' (id 99)", "rate(execord_no_such_metric_total[5m])")])
    assert problems == [
        "panel 'Fake' (id 99): execord_no_such_metric_total is not in "
        "execord.server._metrics.METRIC_NAMES"
    ]


def test_check_folds_histogram_series_only() -> None:
    assert metric_names(
        "histogram_quantile(0.99, sum by (le) (rate(execord_ingest_latency_seconds_bucket[5m])))"
        " + execord_tool_call_duration_seconds_count + execord_execution_duration_seconds_sum"
    ) == {
        "execord_ingest_latency_seconds",
        "execord_tool_call_duration_seconds",
        "execord_execution_duration_seconds",
    }
    # A counter is not a histogram: its "_bucket" series does not exist.
    assert unknown_metrics([("x", "execord_executions_ended_bucket")]) == [
        "x: execord_executions_ended_bucket is not in execord.server._metrics.METRIC_NAMES"
    ]
    # A gauge that ends in _seconds is still a name of its own.
    assert not unknown_metrics([("x", "max(execord_approval_oldest_pending_age_seconds)")])
    assert metric_names('up{job="execord"} == 0') == set()


# -- the dashboard ----------------------------------------------------------------------------


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside (collapsed) rows."""
    for p in panels:
        yield p
        yield from _panels(p.get("panels") or [])


def _dashboard_exprs() -> list[tuple[str, str]]:
    d = _dashboard()
    exprs = [
        (f"panel {p.get('title')!r} (id {p.get('id')})", t["expr"])
        for p in _panels(d["panels"])
        for t in p.get("targets") or []
        if t.get("expr")
    ]
    for v in d["templating"]["list"]:
        query = v.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if v.get("type") == "query" and query:
            exprs.append((f"variable {v['name']!r}", query))
    return exprs


def test_dashboard_shape() -> None:
    d = _dashboard()
    assert d["uid"] == "execord"
    assert d["title"] == "Execord"
    assert 36 <= d["schemaVersion"] <= 41
    panels = list(_panels(d["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"
    for p in panels:
        where = f"panel {p.get('title')!r} (id {p['id']})"
        assert p["type"] in {"row", "timeseries", "stat", "bargauge", "gauge", "table"}, where
        pos = p["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, where
        if p["type"] == "row":
            continue
        assert p.get("title"), where
        exprs = [t.get("expr") for t in p.get("targets") or []]
        assert exprs and all(exprs), f"{where} needs targets, each with an expr"
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), f"{where}: duplicate refIds"
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", where
            assert _balanced(t["expr"]), f"{where}: unbalanced brackets in {t['expr']!r}"


def test_dashboard_variables() -> None:
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    wf = variables["workflow"]
    assert wf["type"] == "query"
    assert wf["definition"] == "label_values(execord_executions_ended_total, workflow)"
    users = [where for where, expr in _dashboard_exprs() if "$workflow" in expr]
    assert len(users) >= 5, "the workflow variable should filter the per-workflow panels"


def test_dashboard_covers_what_operators_watch() -> None:
    names = set().union(*(metric_names(expr) for _, expr in _dashboard_exprs()))
    assert len(names) >= 15, sorted(names)
    for name in (
        "execord_executions_ended_total",
        "execord_executions_active",
        "execord_execution_duration_seconds",
        "execord_llm_tokens_total",
        "execord_llm_cost_micros_total",
        "execord_provider_errors_total",
        "execord_provider_retries_total",
        "execord_tool_call_duration_seconds",
        "execord_tool_errors_total",
        "execord_decisions_total",
        "execord_redactions_total",
        "execord_approvals_pending",
        "execord_approval_oldest_pending_age_seconds",
        "execord_approvals_decided_total",
        "execord_ingest_events_total",
        "execord_ingest_latency_seconds",
        "execord_ingest_rejected_total",
        "execord_stream_subscribers",
        "execord_reaper_interrupted_total",
    ):
        assert name in names, f"no dashboard panel queries {name}"


def test_dashboard_metrics_are_exported() -> None:
    problems = unknown_metrics(_dashboard_exprs())
    assert not problems, "dashboard queries unknown metrics:\n" + "\n".join(problems)


# -- Prometheus -------------------------------------------------------------------------------


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    assert isinstance(doc, dict) and doc["groups"], "alerts.yml needs groups"
    rules = []
    for group in doc["groups"]:
        assert group["name"] and group["rules"], group
        rules.extend(group["rules"])
    return rules


def test_alert_rules_shape() -> None:
    rules = _rules()
    for rule in rules:
        where = f"alert {rule.get('alert')!r}"
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, where
        assert rule["alert"] and str(rule["expr"]).strip(), where
        assert re.fullmatch(r"\d+[smhd]", str(rule["for"])), where
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, where
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], where
        assert _balanced(rule["expr"]), f"{where}: unbalanced brackets"
    names = {rule["alert"] for rule in rules}
    missing = [a for a in REQUIRED_ALERTS if a not in names]
    assert not missing, f"alerts.yml lacks {missing}"


def test_alert_rules_query_the_right_metrics() -> None:
    by_name: dict[str, set[str]] = {}
    for rule in _rules():
        by_name.setdefault(rule["alert"], set()).update(metric_names(rule["expr"]))
    assert "execord_executions_ended_total" in by_name["ExecordFailureRateSpike"]
    assert {"execord_approvals_pending", "execord_approval_oldest_pending_age_seconds"} <= (
        by_name["ExecordPendingApprovalBacklog"]
    )
    assert {"execord_tool_errors_total", "execord_tool_call_duration_seconds"} <= (
        by_name["ExecordConnectorErrorSpike"]
    )
    assert by_name["ExecordInterruptedExecutions"] & {
        "execord_executions_ended_total", "execord_reaper_interrupted_total"
    }
    assert "execord_ingest_rejected_total" in by_name["ExecordIngestRejections"]


def test_alert_metrics_are_exported() -> None:
    problems = unknown_metrics((f"alert {r['alert']!r}", r["expr"]) for r in _rules())
    assert not problems, "alerts.yml queries unknown metrics:\n" + "\n".join(problems)


def test_prometheus_config() -> None:
    doc = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    assert "alerts.yml" in doc["rule_files"]
    assert (PROMETHEUS.parent / "alerts.yml").is_file()
    jobs = {job["job_name"]: job for job in doc["scrape_configs"]}
    job = jobs["execord"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{r}:8080" for r in REPLICAS}


# -- docker compose, nginx, the image ---------------------------------------------------------


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _command(service: dict[str, Any]) -> str:
    cmd = service.get("command") or ""
    return " ".join(str(c) for c in cmd) if isinstance(cmd, list) else str(cmd)


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Bind mounts of a service: container path -> host path (relative to deploy/)."""
    out = {}
    for v in service.get("volumes") or []:
        source, target = (v["source"], v["target"]) if isinstance(v, dict) else v.split(":")[:2]
        out[target] = source
    return out


def test_compose_postgres() -> None:
    doc = _compose()
    pg = doc["services"]["postgres"]
    assert pg["image"] == "postgres:15"
    env = _env(pg)
    assert env["POSTGRES_PASSWORD"] == "execord" and env["POSTGRES_DB"] == "execord"
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    named = {source for source in _mounts(pg).values() if not source.startswith((".", "/"))}
    assert named and named <= set(doc.get("volumes") or {}), "postgres needs a named volume"


def test_compose_replicas() -> None:
    services = _compose()["services"]
    keys = set()
    for name in REPLICAS:
        svc = services[name]
        cmd = _command(svc)
        assert cmd.startswith("execord serve "), f"{name}: {cmd!r}"
        db = re.search(r"--db (\S+)", cmd)
        assert db and db.group(1) == "postgresql://postgres:execord@postgres:5432/execord", name
        assert "--host 0.0.0.0" in cmd and "--port 8080" in cmd, name
        assert svc["build"]["context"] == ".."
        assert (DEPLOY / svc["build"]["context"] / svc["build"]["dockerfile"]).resolve() == (
            DEPLOY / "Dockerfile"
        )
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy", name
        assert "/readyz" in " ".join(svc["healthcheck"]["test"]), name
        keys.add(_env(svc)["EXECORD_ADMIN_KEY"])
    # Both replicas take the one bootstrap key from the environment; compose refuses to start
    # without it.
    assert keys == {"${EXECORD_ADMIN_KEY:?set EXECORD_ADMIN_KEY}"}


def test_compose_load_balancer_and_nginx() -> None:
    services = _compose()["services"]
    lb = services["lb"]
    assert lb["image"].startswith("nginx:")
    assert "8080:80" in [str(p) for p in lb["ports"]]
    conf_source = _mounts(lb)["/etc/nginx/nginx.conf"]
    assert (DEPLOY / conf_source).resolve() == NGINX
    conf = NGINX.read_text(encoding="utf-8")
    upstreams = dict(re.findall(r"upstream\s+(\w+)\s*\{([^}]*)\}", conf))
    assert upstreams, "nginx.conf needs an upstream"
    proxied = set(re.findall(r"proxy_pass\s+http://(\w+)\s*;", conf))
    assert proxied and proxied <= set(upstreams)
    for name, body in upstreams.items():
        servers = set(re.findall(r"^\s*server\s+([\w.-]+:\d+)", body, re.M))
        assert servers == {f"{r}:8080" for r in REPLICAS}, name
    assert re.search(r"proxy_buffering\s+off\s*;", conf)
    assert re.search(r"proxy_read_timeout\s+3600s\s*;", conf)
    assert re.search(r"proxy_http_version\s+1\.1\s*;", conf)
    assert re.search(r'proxy_set_header\s+Connection\s+""\s*;', conf)
    stream = re.search(r"location\s+~\s+(\S+)\s*\{([^}]*)\}", conf)
    assert stream and re.search(stream.group(1), "/api/v1/unified/executions/ex_1/stream")
    assert "proxy_buffering off" in stream.group(2)


def test_compose_mounts_exist() -> None:
    """Every file or folder the stack mounts from deploy/ is there."""
    services = _compose()["services"]
    for name, svc in services.items():
        for target, source in _mounts(svc).items():
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} -> {target}"
    prom = _mounts(services["prometheus"])
    assert (DEPLOY / prom["/etc/prometheus"]).resolve() == PROMETHEUS.parent
    grafana = _mounts(services["grafana"])
    assert (DEPLOY / grafana["/etc/grafana/provisioning"]).is_dir()
    dashboards = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/execord.yml").read_text(encoding="utf-8")
    )
    path = dashboards["providers"][0]["options"]["path"]
    assert (DEPLOY / grafana[f"{path}/execord.json"]).resolve() == DASHBOARD
    sources = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text(encoding="utf-8")
    )
    (ds,) = sources["datasources"]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"


@pytest.mark.parametrize(
    "pattern",
    [
        r"^FROM python:3\.11-slim\b",
        r"^RUN pip install --no-cache-dir \.",
        r"^EXPOSE 8080$",
        r"^USER (?!root\b)\w+",
        r'^CMD \["execord", "serve"',
    ],
)
def test_dockerfile(pattern: str) -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(pattern, text, re.M), pattern
