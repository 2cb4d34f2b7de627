"""The Helm chart (charts/conch) and the Dockerfiles (docker/), with the real `helm` and `kubectl`
built by `make tools` and the real kube-apiserver of the session's local control plane.

kwok plays the kubelet: the chart's pods become Running/Ready but nothing executes inside them. So
that the chart's RBAC is proven rather than assumed, the real operator and the real gateway run
here as local processes authenticated with tokens of the chart's own ServiceAccounts, with the
command lines and settings read from the installed Deployments.

The Dockerfiles are never built here (no container engine): they are parsed and their invariants
checked.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import json
import os
import re
import sys
import tomllib
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conch_cluster import toolchain
from support import REPO_ROOT
from support.chart import (CHART, CRD_FILE, RELEASE, ChartOperator, Helm, deployed_container, denied,
                           established, get_model, helm_env, installed, restore_crd, service_account_kubeconfig)
from support.k8s import GatewayProcess, condition, wait_until

pytestmark = pytest.mark.k8s

DOCKER = REPO_ROOT / "docker"
APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())


def everything(namespace: str = "models") -> dict:
    """Values that turn on every optional part of the chart."""
    return {
        "image": {"registry": "registry.example.com/ml", "tag": "0.1.0-rc1", "pullPolicy": "Always",
                  "pullSecrets": ["regcred"]},
        "commonLabels": {"team": "ml"},
        "operator": {"peering": {"enabled": True}, "verbose": True, "podAnnotations": {"a": "b"},
                     "env": [{"name": "CONCH_OPERATOR_EXTERNAL_PROBE_INTERVAL_S", "value": "5"}],
                     "nodeSelector": {"kubernetes.io/os": "linux"},
                     "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "conch",
                                      "effect": "NoSchedule"}]},
        "gateway": {"watchNamespace": namespace, "defaultModel": "smollm2",
                    "ingress": {"enabled": True, "className": "nginx", "host": "conch.example.com",
                                "annotations": {"nginx.ingress.kubernetes.io/proxy-buffering": "off"},
                                "tls": {"enabled": True}},
                    "autoscaling": {"enabled": True, "targetMemoryUtilizationPercentage": 80},
                    "podDisruptionBudget": {"enabled": True},
                    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                                   "whenUnsatisfiable": "ScheduleAnyway",
                                                   "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "gateway"}}}]},
        "monitoring": {"labels": {"release": "kube-prometheus-stack"}, "serviceMonitor": {"enabled": True},
                       "prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True}},
    }


def namespaced(namespace: str = "models") -> dict:
    """The operator and the gateway confined to one namespace (Roles instead of ClusterRoles)."""
    return {"operator": {"watchNamespaces": [namespace], "peering": {"enabled": True}},
            "gateway": {"watchNamespace": namespace}}


# ---------------------------------------------------------------------------------------------- helm


@pytest.fixture(scope="module")
def helm(tmp_path_factory) -> Helm:
    """helm without a cluster: lint and template."""
    home = tmp_path_factory.mktemp("helm")
    return Helm(helm_env(dict(os.environ), home, toolchain.ensure()), home)


@pytest.fixture(scope="module")
def cluster_helm(cluster, tmp_path_factory) -> Helm:
    home = tmp_path_factory.mktemp("helm-cluster")
    return Helm(helm_env(cluster.env(), home, cluster.bin_dir), home)


def find(docs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = find(docs, kind, name)
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


# ---------------------------------------------------------------------------------------------- lint and schema


@pytest.mark.parametrize("values", [None, everything(), namespaced()], ids=["default", "everything", "namespaced"])
def test_lint_strict(helm, values):
    result = helm("lint", "--strict", str(CHART), *helm.values_file(values))
    assert "0 chart(s) failed" in result.stdout, result.stdout


@pytest.mark.parametrize("values, message", [
    ({"operator": {"replicas": "two"}}, "at '/operator/replicas': got string, want integer"),
    ({"gateway": {"replicas": "two"}}, "at '/gateway/replicas': got string, want integer"),
    ({"gateway": {"replicas": -1}}, "at '/gateway/replicas': minimum: got -1, want 0"),
    ({"gateway": {"service": {"type": "Ingress"}}}, "at '/gateway/service/type'"),
    ({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy'"),
    ({"gateway": {"replica": 3}}, "additional properties 'replica' not allowed"),
    ({"crds": {"keep": "yes"}}, "at '/crds/keep': got string, want boolean"),
    ({"operator": {"watchNamespaces": ["Not_A_Namespace"]}}, "at '/operator/watchNamespaces/0'"),
    ({"operator": {"resources": {"requests": {"cpu": "lots"}}}}, "at '/operator/resources/requests/cpu'"),
    ({"gateway": {"resources": {"limits": None}}}, "at '/gateway/resources"),
    ({"monitoring": {"serviceMonitor": {"interval": "often"}}}, "at '/monitoring/serviceMonitor/interval'"),
], ids=lambda v: json.dumps(v) if isinstance(v, dict) else None)
def test_schema_rejects_bad_values(helm, values, message):
    result = helm.template(values, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize("values, message", [
    ({"operator": {"replicas": 2, "leaderElection": {"enabled": False}}},
     "operator.replicas > 1 needs operator.leaderElection.enabled=true"),
    ({"gateway": {"podDisruptionBudget": {"enabled": True, "maxUnavailable": 1}}},
     "set exactly one of minAvailable and maxUnavailable"),
    ({"gateway": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}},
     "minReplicas must not exceed gateway.autoscaling.maxReplicas"),
])
def test_templates_refuse_impossible_combinations(helm, values, message):
    result = helm.template(values, check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr


# ---------------------------------------------------------------------------------------------- the CRD


def test_chart_crd_is_the_generated_crd(helm):
    """The chart reads files/conch.dev_models.yaml; it must stay byte-for-byte crds/conch.dev_models.yaml."""
    assert (CHART / "files" / "conch.dev_models.yaml").read_bytes() == CRD_FILE.read_bytes(), \
        "run: cp crds/conch.dev_models.yaml charts/conch/files/conch.dev_models.yaml"
    generated = yaml.safe_load(CRD_FILE.read_text())
    rendered = one(helm.render(), "CustomResourceDefinition", "models.conch.dev")
    meta = rendered["metadata"]
    assert meta.pop("annotations") == {"helm.sh/resource-policy": "keep"}
    assert meta.pop("labels")["app.kubernetes.io/managed-by"] == "Helm"
    assert rendered == generated

    not_kept = one(helm.render({"crds": {"keep": False}}), "CustomResourceDefinition", "models.conch.dev")
    assert "annotations" not in not_kept["metadata"]
    assert not find(helm.render({"crds": {"install": False}}), "CustomResourceDefinition")


def test_kopf_peering_crds_ship_in_crds_dir():
    crds = {d["metadata"]["name"]: d for d in yaml.safe_load_all((CHART / "crds" / "kopf-peering.yaml").read_text())}
    assert set(crds) == {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}
    assert crds["clusterkopfpeerings.kopf.dev"]["spec"]["scope"] == "Cluster"
    assert crds["kopfpeerings.kopf.dev"]["spec"]["scope"] == "Namespaced"
    # What kopf looks the peering resources up by (kopf._cogs.structs.references).
    from kopf._cogs.structs import references

    for selector, crd in ((references.CLUSTER_PEERINGS_K, crds["clusterkopfpeerings.kopf.dev"]),
                          (references.NAMESPACED_PEERINGS_K, crds["kopfpeerings.kopf.dev"])):
        assert (selector.group, selector.version, selector.any_name) == \
            (crd["spec"]["group"], crd["spec"]["versions"][0]["name"], crd["spec"]["names"]["plural"])


# ---------------------------------------------------------------------------------------------- RBAC


def rules_of(role: dict) -> dict[tuple[str, str, tuple[str, ...]], set[str]]:
    """(apiGroup, resource, resourceNames) → verbs."""
    out: dict[tuple[str, str, tuple[str, ...]], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                key = (group, resource, tuple(rule.get("resourceNames", ())))
                out.setdefault(key, set()).update(rule["verbs"])
    return out


OPERATOR_NAMESPACED_RULES = {
    ("conch.dev", "models", ()): {"get", "list", "watch"},
    ("conch.dev", "models/status", ()): {"patch"},
    ("apps", "deployments", ()): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "configmaps", ()): {"list", "create", "patch", "delete"},
    ("", "configmaps", ("conch-engines",)): {"get"},
    ("", "services", ()): {"list", "create", "patch", "delete"},
    ("batch", "jobs", ()): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "pods", ()): {"list", "watch"},
    ("", "persistentvolumeclaims", ()): {"get", "create"},
    ("", "secrets", ()): {"get"},
    ("", "events", ()): {"create"},
}
CRD_WATCH = {("apiextensions.k8s.io", "customresourcedefinitions", ()): {"list", "watch"}}


def test_rbac_is_least_privilege(helm):
    default = helm.render()
    peering = helm.render({"operator": {"peering": {"enabled": True}}})
    confined = helm.render(namespaced("models"))
    for docs in (default, peering, confined, helm.render(everything())):
        for role in find(docs, "ClusterRole") + find(docs, "Role"):
            for rule in role["rules"]:
                for field in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule[field], f"wildcard {field} in {role['kind']}/{role['metadata']['name']}"
                assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])

    assert rules_of(one(default, "ClusterRole", "conch-operator")) == {**CRD_WATCH, **OPERATOR_NAMESPACED_RULES}
    assert rules_of(one(peering, "ClusterRole", "conch-operator")) == {
        **CRD_WATCH, **OPERATOR_NAMESPACED_RULES,
        ("kopf.dev", "clusterkopfpeerings", ()): {"list", "watch"},
        ("kopf.dev", "clusterkopfpeerings", ("conch",)): {"patch"}}
    assert one(peering, "ClusterKopfPeering", "conch")

    # Confined to one namespace: the operator's work in a Role there; cluster-wide only reads.
    assert rules_of(one(confined, "ClusterRole", "conch-operator")) == {
        **CRD_WATCH, ("", "namespaces", ()): {"list", "watch"}}
    role = one(confined, "Role", "conch-operator")
    assert role["metadata"]["namespace"] == "models"
    assert rules_of(role) == {**OPERATOR_NAMESPACED_RULES, ("kopf.dev", "kopfpeerings", ()): {"list", "watch"},
                              ("kopf.dev", "kopfpeerings", ("conch",)): {"patch"}}
    assert one(confined, "KopfPeering", "conch")["metadata"]["namespace"] == "models"
    assert one(confined, "RoleBinding", "conch-operator")["subjects"] == [
        {"kind": "ServiceAccount", "name": "conch-operator", "namespace": "conch"}]

    # The gateway only reads Models.
    assert rules_of(one(default, "ClusterRole", "conch-gateway")) == {("conch.dev", "models", ()): {"get", "list", "watch"}}
    gateway_role = one(confined, "Role", "conch-gateway")
    assert gateway_role["metadata"]["namespace"] == "models" and not find(confined, "ClusterRole", "conch-gateway")
    assert rules_of(gateway_role) == {("conch.dev", "models", ()): {"get", "list", "watch"}}


def test_rbac_covers_what_the_operator_code_touches(helm):
    """Every kind the operator's one door to the API knows (kube._RESOURCES) has a rule, and every
    kind it owns (kube.OWNED_KINDS) can be created, applied, listed and pruned."""
    from conch_operator import kube

    docs = helm.render()
    rules = rules_of(one(docs, "ClusterRole", "conch-operator"))
    # The Lease of leader election: a Role in the release namespace, for that one Lease.
    election = rules_of(one(docs, "Role", "conch-operator-leader-election"))
    assert election == {("coordination.k8s.io", "leases", ()): {"create"},
                        ("coordination.k8s.io", "leases", ("conch-operator",)): {"get", "update"}}
    for kind, (prefix, plural) in kube._RESOURCES.items():
        group = "" if prefix == "/api/v1" else prefix.split("/")[2]
        if kind == "Lease":
            continue
        assert any(r[:2] == (group, plural) for r in rules), f"no rule for {kind} ({group}/{plural})"
        if kind in kube.OWNED_KINDS:
            assert {"create", "patch", "list", "delete"} <= rules[(group, plural, ())], kind


# ---------------------------------------------------------------------------------------------- pods


@pytest.mark.parametrize("values", [None, everything(), namespaced()], ids=["default", "everything", "namespaced"])
def test_pods_are_locked_down(helm, values):
    docs = helm.render(values)
    deployments = find(docs, "Deployment")
    assert {d["metadata"]["name"] for d in deployments} == {"conch-operator", "conch-gateway"}
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                          "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}}
        assert pod["automountServiceAccountToken"] is True  # both talk to the API server
        assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001
            assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
            assert security["privileged"] is False and security["capabilities"] == {"drop": ["ALL"]}
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}
            assert container["resources"]["requests"] and container["resources"]["limits"]
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
            assert container["livenessProbe"] and container["readinessProbe"]
    for account in find(docs, "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False  # only the pods that need it mount it


def container(docs: list[dict], deployment: str) -> dict:
    return one(docs, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]


def env_of(c: dict) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def test_images_and_settings(helm):
    docs = helm.render()
    operator, gateway = container(docs, "conch-operator"), container(docs, "conch-gateway")
    assert operator["image"] == f"ghcr.io/conch-dev/conch-operator:{APP_VERSION}"
    assert gateway["image"] == f"ghcr.io/conch-dev/conch-gateway:{APP_VERSION}"
    # The operator's own default Triton image is the one the chart passes on.
    from conch_operator.settings import OperatorSettings

    assert env_of(operator)["CONCH_OPERATOR_CPU_TRITON_IMAGE"] == OperatorSettings.model_fields["cpu_triton_image"].default
    assert env_of(operator)["CONCH_OPERATOR_METRICS_PORT"] == str(OperatorSettings.model_fields["metrics_port"].default)
    for setting, value in (("trtllm_triton_image", env_of(operator)["CONCH_OPERATOR_TRTLLM_TRITON_IMAGE"]),
                           ("trtllm_builder_image", env_of(operator)["CONCH_OPERATOR_TRTLLM_BUILDER_IMAGE"]),
                           ("gpu_default_requests", json.loads(env_of(operator)["CONCH_OPERATOR_GPU_DEFAULT_REQUESTS"])),
                           ("build_requests", json.loads(env_of(operator)["CONCH_OPERATOR_BUILD_REQUESTS"])),
                           ("build_retry_base_s", float(env_of(operator)["CONCH_OPERATOR_BUILD_RETRY_BASE_S"])),
                           ("build_retry_cap_s", float(env_of(operator)["CONCH_OPERATOR_BUILD_RETRY_CAP_S"]))):
        assert OperatorSettings().model_dump()[setting] == value, setting  # the chart's defaults are the operator's
    assert operator["args"] == ["--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz", "--leader-election",
                                "--leader-election-name=conch-operator"]
    assert env_of(operator)["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert {p["name"]: p["containerPort"] for p in operator["ports"]} == {"healthz": 8080, "metrics": 8090}
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    operator_deployment = one(docs, "Deployment", "conch-operator")["spec"]
    assert operator_deployment["replicas"] == 2  # a leader and a standby
    assert operator_deployment["strategy"] == {"type": "RollingUpdate",
                                               "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    single = one(helm.render({"operator": {"replicas": 1, "leaderElection": {"enabled": False}}}),
                 "Deployment", "conch-operator")["spec"]
    assert single["strategy"] == {"type": "Recreate"}  # without a Lease, never two at once
    assert "--leader-election" not in single["template"]["spec"]["containers"][0]["args"]

    gateway_env = env_of(gateway)
    assert gateway_env["CONCH_MODEL_SOURCE"] == "kubernetes" and gateway_env["CONCH_HOST"] == "0.0.0.0"
    assert gateway_env["PORT"] == "8000" and "CONCH_WATCH_NAMESPACE" not in gateway_env
    assert "CONCH_DEFAULT_MODEL" not in gateway_env
    assert json.loads(gateway_env["CONCH_CORS_ALLOW_ORIGINS"]) == ["*"]
    # /health answers 503 while no model is healthy: never a probe.
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert not gateway[probe]["httpGet"]["path"].startswith("/health")
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/v1/models"

    custom = helm.render(everything("models"))
    operator, gateway = container(custom, "conch-operator"), container(custom, "conch-gateway")
    assert operator["image"] == "registry.example.com/ml/conch-operator:0.1.0-rc1"
    assert env_of(operator)["CONCH_OPERATOR_CPU_TRITON_IMAGE"] == "registry.example.com/ml/triton-cpu:0.1.0-rc1"
    assert operator["imagePullPolicy"] == "Always"
    assert operator["args"] == ["--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz", "--leader-election",
                                "--leader-election-name=conch-operator", "--peering=conch", "--verbose"]
    assert env_of(operator)["POD_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env_of(gateway)["CONCH_WATCH_NAMESPACE"] == "models" and env_of(gateway)["CONCH_DEFAULT_MODEL"] == "smollm2"
    assert "replicas" not in one(custom, "Deployment", "conch-gateway")["spec"]  # the HPA owns it
    pod = one(custom, "Deployment", "conch-gateway")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    ingress = one(custom, "Ingress", "conch-gateway")
    assert ingress["spec"]["tls"] == [{"secretName": "conch-gateway-tls", "hosts": ["conch.example.com"]}]
    assert ingress["spec"]["rules"][0]["host"] == "conch.example.com"
    assert all(d["metadata"]["labels"]["team"] == "ml" for d in custom)

    confined = container(helm.render(namespaced("models")), "conch-operator")
    assert confined["args"][:1] == ["--namespace=models"] and "--peering=conch" in confined["args"]


# ---------------------------------------------------------------------------------------------- monitoring


def known_metrics() -> dict[str, set[str]]:
    """Every series name the gateway and the operator export, with its label names."""
    from conch_gateway.observability import Metrics
    from conch_operator import metrics as operator_metrics

    gateway = Metrics()
    gateway.observe_request("POST", "/v1/generate", "200", 0.1)
    gateway.tokens_generated("m", 1)
    gateway.backend_error("m", "TRITON_SERVER_ERROR")
    gateway.active.inc()
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


# ---------------------------------------------------------------------------------------------- Dockerfiles


def dockerfile(path: Path) -> list[list[tuple[str, str]]]:
    """Instructions (upper-case keyword, arguments) grouped by stage; continuation lines joined."""
    stages: list[list[tuple[str, str]]] = []
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not current):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stages.append([])
        assert stages, f"{path.name}: {keyword} before FROM"
        stages[-1].append((keyword, args.strip()))
        current = ""
    return stages


def args_of(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    return [args for k, args in stage if k == keyword]


BUILD_TOOLS = re.compile(r"\b(build-essential|gcc|g\+\+|cmake|make|git|pip install)\b")


def test_dockerfiles_are_multi_stage_non_root_and_pinned():
    from conch_operator.manifests import llama_cpp
    from conch_operator.settings import OperatorSettings
    from conch_api import Model

    smollm2 = Model.model_validate({**yaml.safe_load((REPO_ROOT / "examples" / "smollm2-cpu.yaml").read_text()),
                                    "metadata": {"name": "smollm2", "namespace": "default", "uid": "u"}})
    triton_command = llama_cpp.deployment(smollm2, OperatorSettings(), "hash")["spec"]["template"]["spec"]["containers"][0]["command"]
    expected = {
        "gateway.Dockerfile": ["python", "-m", "conch_gateway"],
        "operator.Dockerfile": ["python", "-m", "conch_operator"],
        "triton-cpu.Dockerfile": triton_command,  # what the operator runs in the image
    }
    # The engine builder is built on NVIDIA's Triton image instead: test_trtllm_builder_dockerfile.
    assert {p.name for p in DOCKER.glob("*.Dockerfile")} == {*expected, "trtllm-builder.Dockerfile"}
    for name, entrypoint in expected.items():
        stages = dockerfile(DOCKER / name)
        assert len(stages) >= 2, f"{name}: not multi-stage"
        bases = [args.split()[0] for stage in stages for args in args_of(stage, "FROM")]
        for base in bases:
            assert re.fullmatch(r"[a-z0-9./-]+:\d+\.\d+\.\d+[-a-z0-9.]*(@sha256:[0-9a-f]{64})?", base), \
                f"{name}: base image {base} is not pinned to a full version"
        # The venv built in the first stage is copied into the last: same Python, same paths.
        assert len(set(bases)) == 1, f"{name}: stages on different bases {bases}"
        final = stages[-1]
        assert args_of(final, "USER") in (["10001"], ["10001:10001"]), f"{name}: final USER"
        assert json.loads(args_of(final, "ENTRYPOINT")[-1]) == entrypoint, name
        for run in args_of(final, "RUN"):
            assert not BUILD_TOOLS.search(run.replace("libstdc++6", "")), f"{name}: build tools in the final stage: {run}"
        for stage in stages:
            for copy in args_of(stage, "COPY"):
                if "--from=" in copy:
                    continue
                for source in copy.split()[:-1]:
                    assert (REPO_ROOT / source).exists(), f"{name}: COPY {source} does not exist"
    triton = (DOCKER / "triton-cpu.Dockerfile").read_text()
    gguf = smollm2.spec.source.file.path
    assert f"{gguf} \\" in triton or f"{gguf}\n" in triton, "the GGUF examples/smollm2-cpu.yaml names"
    registry = DEFAULTS["image"]["registry"]
    assert OperatorSettings.model_fields["cpu_triton_image"].default == \
        f"{registry}/{DEFAULTS['operator']['tritonImage']['repository']}:{APP_VERSION}"
    for image, dockerfile_name in (("conch-gateway", "gateway"), ("conch-operator", "operator"), ("triton-cpu", "triton-cpu")):
        assert f"-t {registry}/{image}:{APP_VERSION} ." in (DOCKER / f"{dockerfile_name}.Dockerfile").read_text()


def test_trtllm_builder_dockerfile():
    """The build Job's image: on the very Triton image that serves the engines (an engine only loads
    in the TensorRT-LLM that built it), non-root as the operator's pods, entry point the builder,
    and tagged as the operator's default."""
    from conch_engines.tensorrt_llm import TRITON_TRTLLM_IMAGE
    from conch_operator.settings import OperatorSettings

    path = DOCKER / "trtllm-builder.Dockerfile"
    text = path.read_text()
    stages = dockerfile(path)
    assert all(args_of(stage, "FROM")[0].split()[0] == TRITON_TRTLLM_IMAGE for stage in stages)
    final = stages[-1]
    assert args_of(final, "USER") == ["1000:1000"]
    assert json.loads(args_of(final, "ENTRYPOINT")[-1]) == ["python3", "-m", "conch_engines.tensorrt_llm.builder"]
    for copy in args_of(final, "COPY"):
        if "--from=" not in copy:
            assert all((REPO_ROOT / source).exists() for source in copy.split()[:-1]), copy
    assert f"-t {OperatorSettings().trtllm_builder_image} ." in text


def third_party_imports(*paths: Path) -> set[str]:
    modules: set[str] = set()
    files = [f for p in paths for f in ([p] if p.is_file() else p.rglob("*.py"))]
    for file in files:
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names and not m.startswith("conch_")}


def requirement_closure(requirements: list[Requirement]) -> set[str]:
    """Distribution names the requirements install, following installed metadata (with extras)."""
    seen: set[tuple[str, frozenset[str]]] = set()
    stack = list(requirements)
    while stack:
        req = stack.pop()
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = metadata.requires(req.name) or []
        except metadata.PackageNotFoundError:
            continue
        for spec in map(Requirement, requires):
            if spec.marker is None or any(spec.marker.evaluate({"extra": e}) for e in (req.extras or {""})):
                stack.append(spec)
    return {name for name, _ in seen}


@pytest.mark.parametrize("image, sources, extra", [
    ("gateway", ["gateway/conch_gateway", "crds/conch_api"], set()),
    # tritonclient: conch_engines.repository loads its model_config_pb2 by file location.
    # conch_engines.tensorrt_llm: all but builder.py, which runs in the engine builder's image.
    ("operator", ["operator/conch_operator", "crds/conch_api", "engines/conch_engines/repository.py",
                  "engines/conch_engines/contract.py",
                  *(f"engines/conch_engines/tensorrt_llm/{m}.py" for m in ("__init__", "pins", "inputs", "commands",
                                                                           "repository"))], {"tritonclient"}),
])
def test_image_requirements_cover_imports_and_match_pyproject(image, sources, extra):
    lines = [line.strip() for line in (DOCKER / "requirements" / f"{image}.txt").read_text().splitlines()]
    requirements = [Requirement(line) for line in lines if line and not line.startswith("#")]
    project = {canonicalize_name(r.name): r for r in map(Requirement, tomllib.loads(
        (REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"])}
    for req in requirements:
        declared = project.get(canonicalize_name(req.name))
        assert declared is not None, f"{req.name} is not a dependency in pyproject.toml"
        assert req.specifier == declared.specifier and req.extras <= declared.extras, \
            f"{req} differs from pyproject.toml's {declared}"
    installed = requirement_closure(requirements)
    providers = metadata.packages_distributions()
    for module in third_party_imports(*(REPO_ROOT / s for s in sources)) | extra:
        dists = {canonicalize_name(d) for d in providers.get(module, [module])}
        assert dists & installed, f"docker/requirements/{image}.txt installs nothing that provides `{module}`"


# ---------------------------------------------------------------------------------------------- the real API server


PROMETHEUS_CRDS = [  # minimal copies: enough for the API server to accept and validate the chart's objects
    {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
     "metadata": {"name": f"{plural}.monitoring.coreos.com"},
     "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
              "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
              "versions": [{"name": "v1", "served": True, "storage": True,
                            "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec}}}}]}}
    for kind, plural, spec in (
        ("ServiceMonitor", "servicemonitors", {
            "type": "object", "required": ["selector", "endpoints"], "properties": {
                "selector": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "namespaceSelector": {"type": "object", "properties": {
                    "any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}}},
                "jobLabel": {"type": "string"},
                "endpoints": {"type": "array", "items": {"type": "object", "properties": {
                    "port": {"type": "string"}, "path": {"type": "string"}, "scheme": {"type": "string"},
                    "interval": {"type": "string", "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"},
                    "scrapeTimeout": {"type": "string"}, "honorLabels": {"type": "boolean"}}}}}}),
        ("PrometheusRule", "prometheusrules", {
            "type": "object", "properties": {"groups": {"type": "array", "items": {
                "type": "object", "required": ["name", "rules"], "properties": {
                    "name": {"type": "string"}, "interval": {"type": "string"},
                    "rules": {"type": "array", "items": {"type": "object", "required": ["expr"], "properties": {
                        "alert": {"type": "string"}, "record": {"type": "string"},
                        "expr": {"x-kubernetes-int-or-string": True},
                        "for": {"type": "string"},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}}}}}}}}),
    )
]


@pytest.fixture(scope="module")
def extra_crds(cluster) -> Iterator[None]:
    """kopf's peering CRDs (the chart's crds/) and minimal prometheus-operator CRDs, really applied,
    so that server-side dry runs can validate the objects of those kinds."""
    cluster.kubectl("apply", "-f", str(CHART / "crds" / "kopf-peering.yaml"))
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(PROMETHEUS_CRDS))
    for name in ("clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev", "servicemonitors.monitoring.coreos.com",
                 "prometheusrules.monitoring.coreos.com"):
        wait_until(lambda: established(cluster, name), 30, message=f"{name} established")
    yield
    cluster.kubectl("delete", "crd", "servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com",
                    "--wait=false", check=False)


@pytest.mark.parametrize("variant", ["default", "everything", "namespaced"])
def test_server_side_dry_run(cluster_helm, cluster, namespace, extra_crds, variant):
    values = {"default": None, "everything": everything(namespace), "namespaced": namespaced(namespace)}[variant]
    manifest = cluster_helm.template(values, namespace=namespace).stdout
    kinds = [d["kind"] for d in yaml.safe_load_all(manifest) if d]
    result = cluster.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-", input=manifest, check=False)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == len(kinds) and all(line.endswith("(server dry run)") for line in lines), result.stdout


# ---------------------------------------------------------------------------------------------- install, run, upgrade, uninstall


@pytest.fixture(scope="module")
def release(cluster, cluster_helm) -> Iterator[str]:
    """The chart installed (with peering, ingress and a PodDisruptionBudget) into its own namespace;
    yields the namespace."""
    values = {"operator": {"peering": {"enabled": True}},
              "gateway": {"ingress": {"enabled": True, "host": "conch.example.com"},
                          "podDisruptionBudget": {"enabled": True}}}
    with installed(cluster, cluster_helm, values) as namespace:
        yield namespace


@pytest.fixture(scope="module")
def models(cluster, release, tmp_path_factory) -> Iterator[tuple[str, ChartOperator]]:
    """examples/*.yaml applied in a namespace of their own, reconciled by the real operator running
    as the chart's operator ServiceAccount."""
    namespace = f"models-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    logs = tmp_path_factory.mktemp("chart-operator")
    kubeconfig = service_account_kubeconfig(cluster, release, "conch-operator", logs / "operator.kubeconfig")
    operator = ChartOperator(cluster, release, logs, kubeconfig, "chart-test-a").start()
    for example in sorted((REPO_ROOT / "examples").glob("*.yaml")):
        cluster.kubectl("-n", namespace, "apply", "-f", str(example))
    yield namespace, operator
    operator.stop()
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_install_puts_every_part_on_the_cluster(cluster, cluster_helm, release):
    status = json.loads(cluster_helm("status", RELEASE, "-n", release, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed" and status["version"] == 1
    assert "kubectl apply -n" in status["info"]["notes"] and "/v1/generate" in status["info"]["notes"]
    for name, replicas in (("conch-operator", 2), ("conch-gateway", 2)):
        deployment = json.loads(cluster.kubectl("-n", release, "get", "deployment", name, "-o", "json").stdout)
        assert deployment["status"].get("readyReplicas") == replicas, name
    pods = json.loads(cluster.kubectl("-n", release, "get", "pods", "-o", "json").stdout)["items"]
    assert len(pods) == 4 and all(p["status"]["phase"] == "Running" for p in pods)
    crd = json.loads(cluster.kubectl("get", "crd", "models.conch.dev", "-o", "json").stdout)
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert crd["metadata"]["annotations"]["meta.helm.sh/release-namespace"] == release
    assert cluster.kubectl("get", "clusterkopfpeering", "conch", check=False).returncode == 0
    for kind, name in (("ingress", "conch-gateway"), ("pdb", "conch-gateway"), ("service", "conch-operator-metrics"),
                       ("serviceaccount", "conch-operator"), ("serviceaccount", "conch-gateway")):
        cluster.kubectl("-n", release, "get", kind, name)


def test_examples_reach_their_status_with_the_operator_service_account(cluster, release, models):
    namespace, operator = models

    def ready():
        model = get_model(cluster, namespace, "smollm2")
        return model if (model or {}).get("status", {}).get("phase") == "Ready" else None

    smollm2 = wait_until(ready, 30, message="smollm2 Ready")
    assert smollm2["status"]["endpoint"] == f"http://smollm2-triton.{namespace}.svc:8000"
    assert condition(smollm2, "Ready")["status"] == "True"
    triton = deployed_container(cluster, namespace, "smollm2-triton")
    # The Triton image the chart told the operator to use.
    assert triton["image"] == f"ghcr.io/conch-dev/triton-cpu:{APP_VERSION}"
    assert triton["command"][:4] == ["python", "-m", "conch_engines", "serve"]

    # The external example points at `make up`'s Triton on 127.0.0.1:8100: Ready only if one runs there.
    external = wait_until(lambda: condition(get_model(cluster, namespace, "smollm2-local"), "Ready"), 30,
                          message="smollm2-local probed")
    assert "127.0.0.1:8100" in external["message"]

    assert httpx.get(f"http://127.0.0.1:{operator.liveness_port}/healthz", timeout=5).status_code == 200
    assert "conch_operator_reconciles_total" in httpx.get(f"http://127.0.0.1:{operator.metrics_port}/metrics").text
    assert not denied(operator.log()), "\n".join(denied(operator.log()))


def test_a_second_replica_stands_by_and_takes_over(cluster, release, models, tmp_path):
    """Leader election with the chart's Lease Role: a second operator (the chart's second replica)
    stands by while the first leads, reconciles nothing, and leads once the first shuts down."""
    namespace, first = models
    kubeconfig = service_account_kubeconfig(cluster, release, "conch-operator", tmp_path / "second.kubeconfig")
    second = ChartOperator(cluster, release, tmp_path, kubeconfig, "chart-test-b").start()
    lease = lambda: json.loads(cluster.kubectl("-n", release, "get", "lease", "conch-operator", "-o", "json").stdout)
    try:
        assert "standing by" in second.log() and lease()["spec"]["holderIdentity"] == "chart-test-a"
        new_model = lambda name: cluster.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump({
            "apiVersion": "conch.dev/v1alpha1", "kind": "Model", "metadata": {"name": name},
            "spec": {"runtime": "llama-cpp", "source": {"file": {"path": "/models/m.gguf"}}}}))
        phase = lambda name: (get_model(cluster, namespace, name).get("status") or {}).get("phase")
        new_model("before-failover")
        wait_until(lambda: phase("before-failover") == "Ready", 30, message="the leader reconciles")
        assert "Initial authentication has finished" not in second.log()  # the standby never ran kopf

        first.stop()  # a rollout or node drain: the leader releases the Lease on its way out
        wait_until(lambda: lease()["spec"]["holderIdentity"] == "chart-test-b", 15, message="the standby takes over")
        new_model("after-failover")
        wait_until(lambda: phase("after-failover") == "Ready", 30, message="the new leader reconciles")
    finally:
        second.stop()
        first.start()  # the module's operator, for the tests that follow
    assert not denied(first.log() + second.log())


def test_gateway_service_account_serves_the_models(cluster, release, models, tmp_path):
    namespace, _ = models
    kubeconfig = service_account_kubeconfig(cluster, release, "conch-gateway", tmp_path / "gateway.kubeconfig")
    gateway = GatewayProcess(cluster, None, tmp_path)
    spec = deployed_container(cluster, release, "conch-gateway")
    gateway.env.update({e["name"]: e["value"] for e in spec["env"] if e["name"] not in ("CONCH_HOST", "PORT")})
    gateway.env.update({"KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)})
    assert gateway.env["CONCH_MODEL_SOURCE"] == "kubernetes"
    gateway.start()
    try:
        ids = {m["id"] for m in httpx.get(f"{gateway.url}/v1/models").json()["data"]}
        assert {"smollm2", "smollm2-local"} <= ids
        # The watch works too: a new Model appears, and turns healthy once the operator made it Ready.
        name = f"probe-{uuid.uuid4().hex[:6]}"
        cluster.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump({
            "apiVersion": "conch.dev/v1alpha1", "kind": "Model", "metadata": {"name": name},
            "spec": {"runtime": "llama-cpp", "source": {"file": {"path": "/models/m.gguf"}}}}))

        def healthy():
            listed = {m["id"]: m for m in httpx.get(f"{gateway.url}/v1/models").json()["models"]}
            return listed.get(name, {}).get("status") == "healthy" and listed[name]

        entry = wait_until(healthy, 30, message=f"{name} healthy in the gateway")
        assert entry["endpoint"] == f"http://{name}-triton.{namespace}.svc:8000"
        assert httpx.get(f"{gateway.url}/metrics").status_code == 200  # the liveness and startup probe
    finally:
        gateway.stop()
    assert not denied(gateway.log()) and "Forbidden" not in gateway.log(), gateway.log()


def can_i(cluster, account: str, *request: str) -> bool:
    result = cluster.kubectl("auth", "can-i", f"--as={account}", *request, check=False)
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


def test_service_accounts_cannot_overreach(cluster, release):
    operator = f"system:serviceaccount:{release}:conch-operator"
    gateway = f"system:serviceaccount:{release}:conch-gateway"
    elsewhere = "--namespace=anywhere"
    for request in (("create", "deployments.apps"), ("delete", "deployments.apps"), ("patch", "models.conch.dev",
                    "--subresource=status"), ("watch", "pods"), ("get", "secrets"), ("create", "events"),
                    ("patch", "clusterkopfpeerings.kopf.dev/conch")):
        assert can_i(cluster, operator, *request, elsewhere), request
    for request in (("delete", "secrets"), ("list", "secrets"), ("create", "secrets"), ("create", "pods"),
                    ("delete", "pods"), ("create", "pods", "--subresource=exec"), ("patch", "models.conch.dev"),
                    ("delete", "models.conch.dev"), ("create", "models.conch.dev"), ("get", "configmaps"),
                    ("patch", "events"), ("get", "nodes"), ("create", "clusterroles.rbac.authorization.k8s.io"),
                    ("create", "rolebindings.rbac.authorization.k8s.io"), ("delete", "customresourcedefinitions"),
                    ("patch", "clusterkopfpeerings.kopf.dev/someone-else"), ("*", "*")):
        assert not can_i(cluster, operator, *request, elsewhere), request
    for request in (("list", "models.conch.dev"), ("watch", "models.conch.dev"), ("get", "models.conch.dev")):
        assert can_i(cluster, gateway, *request, elsewhere), request
    for request in (("create", "models.conch.dev"), ("patch", "models.conch.dev"), ("delete", "models.conch.dev"),
                    ("patch", "models.conch.dev", "--subresource=status"), ("get", "secrets"), ("list", "pods"),
                    ("create", "events"), ("*", "*")):
        assert not can_i(cluster, gateway, *request, elsewhere), request


def test_namespaced_install_confines_the_operator(cluster, cluster_helm, release, tmp_path):
    """operator.watchNamespaces / gateway.watchNamespace: Roles in the watched namespace, and the real
    operator (`-n`, with namespaced kopf peering) reconciles there with nothing more. A second
    release beside the first: it leaves the Model CRD to the first (crds.install=false)."""
    suffix = uuid.uuid4().hex[:6]
    home, watched, other = f"scoped-{suffix}", f"scoped-models-{suffix}", f"scoped-other-{suffix}"
    for namespace in (home, watched, other):
        cluster.kubectl("create", "namespace", namespace)
    values = {"crds": {"install": False}, "gateway": {"watchNamespace": watched},
              "operator": {"watchNamespaces": [watched], "peering": {"enabled": True}}}
    cluster_helm("install", "scoped", str(CHART), "-n", home, "--wait", "--timeout=90s",
                 *cluster_helm.values_file(values))
    operator = None
    try:
        kubeconfig = service_account_kubeconfig(cluster, home, "scoped-conch-operator", tmp_path / "scoped.kubeconfig")
        operator = ChartOperator(cluster, home, tmp_path, kubeconfig, "scoped-a", deployment="scoped-conch-operator")
        assert operator.args[0] == f"--namespace={watched}"
        operator.start()
        cluster.kubectl("-n", watched, "apply", "-f", str(REPO_ROOT / "examples" / "smollm2-cpu.yaml"))
        wait_until(lambda: (get_model(cluster, watched, "smollm2").get("status") or {}).get("phase") == "Ready", 30,
                   message="smollm2 Ready in the watched namespace")
        peers = json.loads(cluster.kubectl("-n", watched, "get", "kopfpeering", "conch", "-o", "json").stdout)
        assert "scoped-a" in peers.get("status", {})
        # Confined: nothing in any other namespace (the first release's operator, cluster-wide, may be running).
        account = f"system:serviceaccount:{home}:scoped-conch-operator"
        assert can_i(cluster, account, "create", "deployments.apps", f"--namespace={watched}")
        for namespace in (other, home):
            assert not can_i(cluster, account, "create", "deployments.apps", f"--namespace={namespace}")
            assert not can_i(cluster, account, "get", "secrets", f"--namespace={namespace}")
        gateway = f"system:serviceaccount:{home}:scoped-conch-gateway"
        assert can_i(cluster, gateway, "watch", "models.conch.dev", f"--namespace={watched}")
        assert not can_i(cluster, gateway, "watch", "models.conch.dev", f"--namespace={other}")
        assert not denied(operator.log()), "\n".join(denied(operator.log()))
    finally:
        if operator:
            operator.stop()
        cluster_helm("uninstall", "scoped", "-n", home, "--wait", check=False)
        for namespace in (home, watched, other):
            cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_upgrade_applies_a_changed_value(cluster, cluster_helm, release):
    cluster_helm("upgrade", RELEASE, str(CHART), "-n", release, "--reuse-values", "--set", "gateway.replicas=3",
                 "--wait", "--timeout=90s")
    deployment = json.loads(cluster.kubectl("-n", release, "get", "deployment", "conch-gateway", "-o", "json").stdout)
    assert deployment["spec"]["replicas"] == 3 and deployment["status"]["readyReplicas"] == 3
    status = json.loads(cluster_helm("status", RELEASE, "-n", release, "-o", "json").stdout)
    assert status["version"] == 2 and status["info"]["status"] == "deployed"
    assert established(cluster, "models.conch.dev")


def test_uninstall_keeps_the_crd_and_the_models(cluster, cluster_helm, release, models):
    namespace, _ = models
    cluster_helm("uninstall", RELEASE, "-n", release, "--wait", "--timeout=60s")
    assert cluster.kubectl("-n", release, "get", "deployments", "-o", "name").stdout.strip() == ""
    for cluster_scoped in (("clusterrole", "conch-operator"), ("clusterrolebinding", "conch-gateway"),
                           ("clusterkopfpeering", "conch")):
        assert cluster.kubectl("get", *cluster_scoped, check=False).returncode != 0, cluster_scoped
    assert established(cluster, "models.conch.dev")
    assert get_model(cluster, namespace, "smollm2")["status"]["phase"] == "Ready"


def test_uninstall_deletes_the_crd_when_asked(cluster, cluster_helm, release, models):
    """crds.keep=false, set with `helm upgrade` as NOTES.txt says: the CRD goes with the release, and
    every Model with it. The session's CRD is put back afterwards."""
    namespace, _ = models
    cluster_helm("install", RELEASE, str(CHART), "-n", release, "--wait", "--timeout=90s")  # takes the kept CRD back
    cluster_helm("upgrade", RELEASE, str(CHART), "-n", release, "--reuse-values", "--set", "crds.keep=false",
                 "--wait", "--timeout=90s")
    assert "helm.sh/resource-policy" not in json.loads(
        cluster.kubectl("get", "crd", "models.conch.dev", "-o", "json").stdout)["metadata"].get("annotations", {})
    try:
        cluster_helm("uninstall", RELEASE, "-n", release, "--wait", "--timeout=60s")
        wait_until(lambda: cluster.kubectl("get", "crd", "models.conch.dev", check=False).returncode != 0, 60,
                   message="the Model CRD deleted")
    finally:
        restore_crd(cluster)
    assert get_model(cluster, namespace, "smollm2") is None
