"""The Helm chart (charts/conch) against the real kube-apiserver of the session's local control plane,
with the real `helm` and `kubectl` built by `make tools`: server-side validation of every variant,
install, upgrade, uninstall. (What needs no API server — lint, schema, RBAC and workloads as
rendered, the Dockerfiles — is in tests/unit/packaging; the chart on real pods in tests/e2e.)

kwok plays the kubelet: the chart's pods become Running/Ready but nothing executes inside them. So
that the chart's RBAC is proven rather than assumed, the real operator and the real gateway run
here as local processes authenticated with tokens of the chart's own ServiceAccounts, with the
command lines and settings read from the installed Deployments.
"""

from __future__ import annotations

import json
import uuid
from typing import Iterator

import httpx
import pytest
import yaml

from support import REPO_ROOT
from support.chart import (APP_VERSION, CHART, RELEASE, ChartOperator, Helm, deployed_container, denied,
                           established, everything, get_model, helm_env, installed, namespaced, restore_crd,
                           service_account_kubeconfig)
from support.k8s import GatewayProcess, condition, wait_until

pytestmark = pytest.mark.k8s


@pytest.fixture(scope="module")
def cluster_helm(cluster, tmp_path_factory) -> Helm:
    home = tmp_path_factory.mktemp("helm-cluster")
    return Helm(helm_env(cluster.env(), home, cluster.bin_dir), home)


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
    for name, replicas in (("conch-operator", 2), ("conch-gateway", 2), ("conch-management", 1)):
        deployment = json.loads(cluster.kubectl("-n", release, "get", "deployment", name, "-o", "json").stdout)
        assert deployment["status"].get("readyReplicas") == replicas, name
    pods = json.loads(cluster.kubectl("-n", release, "get", "pods", "-o", "json").stdout)["items"]
    assert len(pods) == 5 and all(p["status"]["phase"] == "Running" for p in pods)
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
    for request in (("list", "models.conch.dev"), ("watch", "models.conch.dev"), ("get", "models.conch.dev"),
                    ("list", "nodes"), ("get", "nodes")):
        assert can_i(cluster, gateway, *request, elsewhere), request
    for request in (("create", "models.conch.dev"), ("patch", "models.conch.dev"), ("delete", "models.conch.dev"),
                    ("patch", "models.conch.dev", "--subresource=status"), ("get", "secrets"), ("list", "pods"),
                    ("create", "events"), ("watch", "nodes"), ("patch", "nodes"), ("*", "*")):
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


def crd_owner(cluster) -> tuple[str, str]:
    annotations = json.loads(cluster.kubectl("get", "crd", "models.conch.dev", "-o", "json").stdout)["metadata"]["annotations"]
    return annotations["meta.helm.sh/release-name"], annotations["meta.helm.sh/release-namespace"]


def test_a_release_in_another_namespace_takes_the_kept_crd_over(cluster, cluster_helm, release, models):
    """The kept CRD still names the uninstalled release as its owner: helm refuses a release in
    another namespace over it, unless told to take it over (`--take-ownership`, docs/kubernetes.md);
    the Models stay."""
    namespace, _ = models
    other = f"{release}-next"
    cluster.kubectl("create", "namespace", other)
    try:
        assert crd_owner(cluster) == (RELEASE, release)
        refused = cluster_helm("install", RELEASE, str(CHART), "-n", other, "--timeout=90s", check=False)
        assert refused.returncode != 0 and "invalid ownership metadata" in refused.stderr, refused.stderr
        cluster_helm("install", RELEASE, str(CHART), "-n", other, "--take-ownership", "--wait", "--timeout=90s")
        assert crd_owner(cluster) == (RELEASE, other) and established(cluster, "models.conch.dev")
        cluster_helm("uninstall", RELEASE, "-n", other, "--wait", "--timeout=60s")
        assert crd_owner(cluster) == (RELEASE, other)  # kept again, the later release's now
        assert get_model(cluster, namespace, "smollm2") is not None
    finally:
        cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)


def test_uninstall_deletes_the_crd_when_asked(cluster, cluster_helm, release, models):
    """crds.keep=false, set with `helm upgrade` as NOTES.txt says: the CRD goes with the release, and
    every Model with it. The session's CRD is put back afterwards."""
    namespace, _ = models
    cluster_helm("install", RELEASE, str(CHART), "-n", release, "--take-ownership", "--wait",
                 "--timeout=90s")  # takes the kept CRD back from the previous test's release
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
