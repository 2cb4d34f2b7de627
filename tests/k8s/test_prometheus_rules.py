"""/api/config/alerts as a PrometheusRule, against the real kube-apiserver, the management API
running as the chart's management ServiceAccount (a token of it, nothing else) with the settings
the chart gives its Deployment.

With the PrometheusRule CRD installed (tests/k8s/data/prometheusrule-crd.yaml: a minimal structural
copy, no prometheus-operator runs here) every rule of the API is in one PrometheusRule, labelled
for prometheus-operator's ruleSelector and owned by the chart's ConfigMap; a deletion removes the
rule from it, and a `kubectl edit` of the ConfigMap reaches it too. Without the CRD the API keeps
working on the ConfigMap alone and says so."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import yaml

from support.chart import CHART, RELEASE, Helm, established, helm_env, service_account_kubeconfig
from support.k8s import GatewayProcess, wait_until

pytestmark = pytest.mark.k8s
CRD_FILE = Path(__file__).parent / "data" / "prometheusrule-crd.yaml"
CRD = "prometheusrules.monitoring.coreos.com"
MANAGEMENT = f"{RELEASE}-management"
RULE_LABELS = {"release": "kube-prometheus-stack"}  # what kube-prometheus-stack's ruleSelector matches


def _crd_gone(cluster) -> bool:
    return cluster.kubectl("get", "crd", CRD, check=False).returncode != 0


@pytest.fixture
def crd_installed(cluster) -> Iterator[None]:
    wait_until(lambda: _crd_gone(cluster) or established(cluster, CRD), 60,
               message="an earlier test's copy of the CRD gone or established")
    cluster.kubectl("apply", "-f", str(CRD_FILE))
    wait_until(lambda: established(cluster, CRD), 30, message=f"{CRD} established")
    yield
    cluster.kubectl("delete", "crd", CRD, "--wait=true", check=False)


@pytest.fixture
def crd_absent(cluster) -> None:
    cluster.kubectl("delete", "crd", CRD, "--ignore-not-found", "--wait=true")
    wait_until(lambda: _crd_gone(cluster), 60, message=f"{CRD} deleted")


@pytest.fixture
def chart(cluster, namespace, tmp_path) -> dict[str, str]:
    """The chart (monitoring.labels set) rendered for this namespace: its ServiceAccounts, namespaced
    RBAC and monitoring ConfigMap applied; returns the monitoring settings of its management Deployment."""
    helm = Helm(helm_env(cluster.env(), tmp_path / "helm", cluster.bin_dir), tmp_path / "helm")
    docs = [d for d in yaml.safe_load_all(helm(
        "template", RELEASE, str(CHART), "-n", namespace, "--set", f"gateway.watchNamespace={namespace}",
        "--set", f"monitoring.labels.release={RULE_LABELS['release']}").stdout) if d]
    deployment = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == MANAGEMENT)
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    settings = {k: v for k, v in env.items() if k.startswith("CONCH_MONITORING_")}
    config_map = settings["CONCH_MONITORING_CONFIG_MAP"].split("/")[1]
    wanted = [d for d in docs if d["kind"] in ("ServiceAccount", "Role", "RoleBinding")
              or (d["kind"] == "ConfigMap" and d["metadata"]["name"] == config_map)]
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(wanted))
    return settings


@pytest.fixture
def management(cluster, namespace, chart, tmp_path) -> Iterator[GatewayProcess]:
    process = GatewayProcess(cluster, namespace, tmp_path)
    process.env["KUBECONFIG"] = str(service_account_kubeconfig(cluster, namespace, MANAGEMENT, tmp_path / "kc"))
    process.env.update(chart, CONCH_MANAGEMENT="true")
    process.start()
    yield process
    process.stop()


def _rule(name: str, threshold: int, severity: str = "warning") -> dict:
    return {"name": name, "expr": f'sum(rate(conch_http_requests_total{{status=~"5.."}}[5m])) > {threshold}',
            "for": "5m", "severity": severity, "summary": f"{name} above {threshold}"}


def _as_prometheus(rule: dict) -> dict:
    """An API rule as a Prometheus rule (what the rule file and the PrometheusRule hold)."""
    return {"alert": rule["name"], "expr": rule["expr"], "for": rule["for"], "labels": {"severity": rule["severity"]},
            "annotations": {"summary": rule["summary"]}}


def _object(cluster, namespace: str, name: str) -> dict | None:
    found = cluster.kubectl("-n", namespace, "get", "prometheusrule", name, "-o", "json", check=False)
    return json.loads(found.stdout) if found.returncode == 0 else None


def _held(obj: dict | None) -> list[dict] | None:
    return None if obj is None else [r for g in obj["spec"]["groups"] for r in g["rules"]]


def test_the_api_s_rules_are_one_prometheus_rule(cluster, namespace, crd_installed, chart, management):
    name = chart["CONCH_MONITORING_PROMETHEUS_RULE"]
    config_map = chart["CONCH_MONITORING_CONFIG_MAP"].split("/")[1]
    with httpx.Client(base_url=management.url, timeout=30) as api:
        for rule in (_rule("ErrorsHigh", 1, "critical"), _rule("ErrorsSome", 0), _rule("ErrorsHigh", 5, "critical")):
            answer = api.post("/api/config/alerts", json=rule)
            assert answer.status_code == 201, management.log()[-3000:]
            assert answer.json()["storage"] == {"config": f"configmap {namespace}/{config_map}",
                                                "prometheus_rule": f"{namespace}/{name}", "note": None}
        rules = api.get("/api/config/alerts").json()
        assert [r["name"] for r in rules] == ["ErrorsSome", "ErrorsHigh"]  # the second ErrorsHigh replaced the first

        obj = _object(cluster, namespace, name)
        assert _held(obj) == [_as_prometheus(r) for r in rules]
        assert obj["metadata"]["labels"]["release"] == RULE_LABELS["release"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
        owner = json.loads(cluster.kubectl("-n", namespace, "get", "configmap", config_map, "-o", "json").stdout)
        assert [(r["kind"], r["name"], r["uid"]) for r in obj["metadata"]["ownerReferences"]] == [
            ("ConfigMap", config_map, owner["metadata"]["uid"])]  # helm uninstall deletes the ConfigMap, GC the copy

        # A deletion removes the rule from the ConfigMap and from the PrometheusRule alike.
        removed = api.delete("/api/config/alerts/ErrorsSome")
        assert removed.status_code == 200 and removed.json()["storage"]["prometheus_rule"] == f"{namespace}/{name}"
        assert [r["name"] for r in api.get("/api/config/alerts").json()] == ["ErrorsHigh"]
        assert _held(_object(cluster, namespace, name)) == [_as_prometheus(_rule("ErrorsHigh", 5, "critical"))]
        missing = api.delete("/api/config/alerts/ErrorsSome")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "ALERT_RULE_NOT_FOUND"
        assert api.delete("/api/config/alerts/not-a-name").status_code == 422

        # The ConfigMap is the one truth: a rule added there with kubectl reaches the copy through the watch.
        edited = rules[1:] + [_rule("ByHand", 3, "info")]
        patch = {"data": {"alert-rules.json": json.dumps(edited)}}
        cluster.kubectl("-n", namespace, "patch", "configmap", config_map, "--type=merge", "-p", json.dumps(patch))
        wait_until(lambda: _held(_object(cluster, namespace, name)) == [_as_prometheus(r) for r in edited], 10,
                   interval=0.1, message="the kubectl edit copied into the PrometheusRule")
        assert api.get("/api/config/alerts").json() == edited

        # The last rule gone: the copy holds none (and stays, for the next one).
        for rule in edited:
            assert api.delete(f"/api/config/alerts/{rule['name']}").status_code == 200
        assert _object(cluster, namespace, name)["spec"]["groups"] == []

    # Least privilege: the management ServiceAccount writes that one PrometheusRule (create cannot
    # be limited by name); the inference gateway's none.
    def can(account: str, *request: str) -> bool:
        return cluster.kubectl("auth", "can-i", *request, "-n", namespace, "--as",
                               f"system:serviceaccount:{namespace}:{account}", check=False).stdout.strip() == "yes"

    assert can(MANAGEMENT, "update", f"prometheusrules.monitoring.coreos.com/{name}")
    assert can(MANAGEMENT, "create", "prometheusrules.monitoring.coreos.com")
    assert not can(MANAGEMENT, "update", "prometheusrules.monitoring.coreos.com/other")
    assert not can(MANAGEMENT, "delete", f"prometheusrules.monitoring.coreos.com/{name}")
    assert not can(f"{RELEASE}-gateway", "create", "prometheusrules.monitoring.coreos.com")


def test_without_the_crd_the_rules_live_in_the_config_map_and_the_answer_says_so(cluster, namespace, crd_absent,
                                                                                 chart, management):
    config_map = chart["CONCH_MONITORING_CONFIG_MAP"].split("/")[1]
    rule = _rule("ErrorsHigh", 1)
    with httpx.Client(base_url=management.url, timeout=30) as api:
        answer = api.post("/api/config/alerts", json=rule)
        assert answer.status_code == 201, management.log()[-3000:]
        storage = answer.json()["storage"]
        assert storage["config"] == f"configmap {namespace}/{config_map}" and storage["prometheus_rule"] is None
        assert "not installed" in storage["note"]
        assert api.get("/api/config/alerts").json() == [rule]
        data = json.loads(cluster.kubectl("-n", namespace, "get", "configmap", config_map, "-o", "json").stdout)["data"]
        assert yaml.safe_load(data["alert-rules.yml"])["groups"][0]["rules"] == [_as_prometheus(rule)]
        removed = api.delete("/api/config/alerts/ErrorsHigh")
        assert removed.status_code == 200 and removed.json()["storage"]["prometheus_rule"] is None
        assert api.get("/api/config/alerts").json() == []
