"""The chart's monitoring: every alert and dashboard query names metrics (and labels) the gateway
and the operator really export; ServiceMonitors select the chart's Services and named ports."""

from __future__ import annotations

import json
import re

import pytest

from support.chart import CHART, everything, find, one


def known_metrics() -> dict[str, set[str]]:
    """Every series name the gateway and the operator export, with its label names."""
    from conch_gateway.limits.admission import Admission
    from conch_gateway.observability import Metrics
    from conch_operator import metrics as operator_metrics

    gateway = Metrics()
    gateway.observe_request("POST", "/v1/generate", "200", 0.1)
    gateway.tokens_generated("m", 1)
    gateway.backend_error("m", "TRITON_SERVER_ERROR")
    gateway.active.inc()
    gateway.first_token("m", True, 0.1)
    gateway.between_tokens("m", 0.1, 1)
    gateway.generation_done("m", True, "stop", 1, 1)
    admission = Admission(1, 0, gateway.registry)
    for series in (admission.in_flight, admission.waiting, admission.rejected):
        series.labels("m")
    with operator_metrics.measured("apply"):
        pass
    with pytest.raises(RuntimeError), operator_metrics.measured("apply"):
        raise RuntimeError("counted")
    operator_metrics.QUEUE_DEPTH.set(0)
    families = list(gateway.registry.collect())
    for collector in (operator_metrics.RECONCILES, operator_metrics.DURATION, operator_metrics.QUEUE_DEPTH,
                      operator_metrics.ERRORS):
        families.extend(collector.collect())
    names: dict[str, set[str]] = {}
    for family in families:
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


PROMQL_METRIC = re.compile(r"\b(conch_[a-z_]+|up)\b(?=\s*[{\[)])")
PROMQL_LABELS = re.compile(r"(?:by|without)\s*\(([^)]*)\)|[{,]\s*([a-z_]+)\s*(?:=~|!~|!=|=)")
SCRAPE_LABELS = {"namespace", "job", "instance", "pod", "service", "endpoint", "container", "le"}


def check_promql(expr: str, known: dict[str, set[str]]) -> None:
    metrics = set(PROMQL_METRIC.findall(expr))
    assert metrics, expr
    labels = set(SCRAPE_LABELS)
    for metric in metrics:
        if metric != "up":
            assert metric in known, f"{metric} is not exported by the gateway or the operator: {expr}"
            labels |= known[metric]
    for by, matcher in PROMQL_LABELS.findall(expr):
        used = {name.strip() for name in by.split(",") if name.strip()} | ({matcher} if matcher else set())
        assert used <= labels, f"unknown labels {used - labels} in {expr}"


def test_alerts_and_dashboard_use_real_metrics(helm):
    known = known_metrics()
    assert {"conch_http_requests_total", "conch_backend_errors_total", "conch_operator_reconcile_errors_total"} <= set(known)
    docs = helm.render(everything("models"))
    rule = one(docs, "PrometheusRule", "conch")
    alerts = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    assert {"ConchGatewayHighErrorRate", "ConchBackendErrors", "ConchNoHealthyModel", "ConchGatewayDown",
            "ConchOperatorDown", "ConchOperatorReconcileErrors"} <= set(alerts)
    for alert in alerts.values():
        check_promql(alert["expr"], known)
        assert alert["labels"]["severity"] and alert["annotations"]["summary"] and alert["for"]
    assert 'job="conch-gateway"' in alerts["ConchGatewayHighErrorRate"]["expr"]
    assert 'job="conch-operator-metrics"' in alerts["ConchOperatorDown"]["expr"]

    dashboard_map = one(docs, "ConfigMap", "conch-dashboard")
    assert dashboard_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(dashboard_map["data"]["conch.json"])
    assert dashboard == json.loads((CHART / "files" / "dashboards" / "conch.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10
    for expr in exprs:
        check_promql(expr.replace("$__rate_interval", "5m"), known)

    # Each ServiceMonitor selects a Service of the chart by its labels and names one of its ports,
    # and that port leads to a named container port of the Deployment behind the Service.
    services = find(docs, "Service")
    monitors = find(docs, "ServiceMonitor")
    assert {m["metadata"]["name"] for m in monitors} == {"conch-gateway", "conch-operator"}
    for monitor in monitors:
        selector = monitor["spec"]["selector"]["matchLabels"]
        matched = [s for s in services if selector.items() <= s["metadata"]["labels"].items()]
        assert len(matched) == 1, monitor["metadata"]["name"]
        port = next(p for p in matched[0]["spec"]["ports"] if p["name"] == monitor["spec"]["endpoints"][0]["port"])
        backing = [d for d in find(docs, "Deployment")
                   if matched[0]["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert [p["name"] for p in backing[0]["spec"]["template"]["spec"]["containers"][0]["ports"]
                if p["name"] == port["targetPort"]]
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
