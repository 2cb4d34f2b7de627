"""The Helm chart on the local control plane, shared by the chart tests (tests/k8s) and the
end-to-end tests (tests/e2e): the pinned helm, adopting the session's Model CRD, and the real
operator running as the chart's ServiceAccount with the installed Deployment's arguments."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml

from . import REPO_ROOT, free_port
from .k8s import Operator, wait_until

CHART = REPO_ROOT / "charts" / "conch"
CRD_FILE = REPO_ROOT / "crds" / "conch.dev_models.yaml"
RELEASE = "conch"


class Helm:
    """The pinned helm binary with private cache/config/data homes, optionally bound to the cluster."""

    def __init__(self, env: dict[str, str], values_dir: Path):
        self.env = env
        self.values_dir = values_dir

    def __call__(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
        result = subprocess.run(["helm", *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode:
            raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def values_file(self, values: dict | None) -> list[str]:
        if not values:
            return []
        path = self.values_dir / f"values-{uuid.uuid4().hex[:8]}.yaml"
        path.write_text(yaml.safe_dump(values))
        return ["-f", str(path)]

    def template(self, values: dict | None = None, *, namespace: str = "conch", check: bool = True,
                 extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        return self("template", RELEASE, str(CHART), "-n", namespace, *self.values_file(values), *extra, check=check)

    def render(self, values: dict | None = None, *, namespace: str = "conch") -> list[dict]:
        return [doc for doc in yaml.safe_load_all(self.template(values, namespace=namespace).stdout) if doc]


def helm_env(base: dict[str, str], home: Path, bins: Path) -> dict[str, str]:
    env = dict(base)
    env["PATH"] = f"{bins}{os.pathsep}{env.get('PATH', '')}"
    env.update({f"HELM_{k}_HOME": str(home / k.lower()) for k in ("CACHE", "CONFIG", "DATA")})
    return env


def established(cluster, name: str) -> bool:
    jsonpath = "jsonpath={.status.conditions[?(@.type=='Established')].status}"
    return cluster.kubectl("get", "crd", name, "-o", jsonpath, check=False).stdout == "True"


def adopt_crd(cluster, namespace: str) -> None:
    """The session applied the Model CRD with kubectl; let this release take it over (Helm's
    documented adoption: its managed-by label and release annotations)."""
    cluster.kubectl("label", "crd", "models.conch.dev", "app.kubernetes.io/managed-by=Helm", "--overwrite")
    cluster.kubectl("annotate", "crd", "models.conch.dev", f"meta.helm.sh/release-name={RELEASE}",
                    f"meta.helm.sh/release-namespace={namespace}", "--overwrite")


def restore_crd(cluster) -> None:
    if cluster.kubectl("get", "crd", "models.conch.dev", check=False).returncode:
        cluster.kubectl("apply", "-f", str(CRD_FILE))
    wait_until(lambda: established(cluster, "models.conch.dev"), 60, message="Model CRD established")
    wait_until(lambda: cluster.kubectl("get", "models", "-A", check=False).returncode == 0, 30, message="Model API")


def service_account_kubeconfig(cluster, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig that authenticates with a token of the chart's ServiceAccount, nothing else."""
    token = cluster.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "conch", "cluster": {
            "server": cluster.server,
            "certificate-authority-data": admin["clusters"][0]["cluster"]["certificate-authority-data"]}}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": "conch", "user": account}}],
        "current-context": account,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def deployed_container(cluster, namespace: str, deployment: str) -> dict:
    body = json.loads(cluster.kubectl("-n", namespace, "get", "deployment", deployment, "-o", "json").stdout)
    return body["spec"]["template"]["spec"]["containers"][0]


class ChartOperator(Operator):
    """`python -m conch_operator` with the installed Deployment's arguments and settings, as its
    ServiceAccount; only the listening ports move to free local ones."""

    def __init__(self, cluster, namespace: str, log_dir: Path, kubeconfig: Path, pod_id: str,
                 deployment: str = "conch-operator"):
        super().__init__(cluster, namespace, log_dir)
        spec = deployed_container(cluster, namespace, deployment)
        self.liveness_port = free_port()
        self.args = [re.sub(r"--liveness=http://0\.0\.0\.0:\d+", f"--liveness=http://127.0.0.1:{self.liveness_port}", a)
                     for a in spec["args"]]
        self.env.update({e["name"]: e["value"] for e in spec["env"] if "value" in e})
        # What the Deployment's downward API would give the pod.
        self.env.update({"KUBECONFIG": str(kubeconfig), "POD_ID": pod_id, "POD_NAME": pod_id, "POD_NAMESPACE": namespace,
                         "HOME": str(log_dir), "CONCH_OPERATOR_METRICS_PORT": str(self.metrics_port)})
        self.log_path = log_dir / f"operator-{pod_id}.log"

    def start(self) -> "ChartOperator":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "conch_operator", *self.args], env=self.env,
                                        cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        started = ("Initial authentication has finished", "standing by")  # leader, standby
        wait_until(lambda: any(s in self.log() for s in started) or self._died(), 60, message="operator start")
        assert self.process.poll() is None, self.log()
        return self


def denied(log: str) -> list[str]:
    """Lines where the API server refused the ServiceAccount, or kopf lacked a permission."""
    return [line for line in log.splitlines()
            if re.search(r'forbidden: User "system:serviceaccount:|Not enough permissions', line)]


def get_model(cluster, namespace: str, name: str) -> dict | None:
    result = cluster.kubectl("-n", namespace, "get", "model", name, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


@contextmanager
def installed(cluster, helm: Helm, values: dict | None = None) -> Iterator[str]:
    """The chart installed (`--wait`) into a namespace of its own, adopting the session's Model
    CRD; uninstalled afterwards, the CRD put back. Yields the namespace."""
    namespace = f"conch-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    adopt_crd(cluster, namespace)
    helm("install", RELEASE, str(CHART), "-n", namespace, "--wait", "--timeout=90s", *helm.values_file(values))
    try:
        yield namespace
    finally:
        helm("uninstall", RELEASE, "-n", namespace, "--wait", check=False)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        restore_crd(cluster)


# ---------------------------------------------------------------------------------------------- values and rendered documents

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


def find(docs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = find(docs, kind, name)
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def container(docs: list[dict], deployment: str) -> dict:
    return one(docs, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]


def env_of(c: dict) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}
