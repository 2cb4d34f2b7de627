"""The local control plane itself: pinned versions, the fake CPU and GPU nodes, scheduling of GPU
pods, garbage collection, and helm against it."""

from __future__ import annotations

import json
import subprocess

import pytest

from conch_cluster.toolchain import pinned_version
from support.k8s import wait_until

pytestmark = pytest.mark.k8s


def test_versions_are_stamped(cluster):
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == version["clientVersion"]["gitVersion"] == pinned_version()
    assert pinned_version() >= "v1.34"


def test_fake_nodes(cluster):
    nodes = {n["metadata"]["name"]: n for n in json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]}
    assert set(nodes) == {"cpu-0", "cpu-1", "gpu-a100-0", "gpu-l4-0"}
    assert nodes["gpu-a100-0"]["status"]["allocatable"]["nvidia.com/gpu"] == "8"
    assert nodes["gpu-l4-0"]["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-L4"
    assert not nodes["cpu-0"]["spec"].get("taints")
    assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in nodes["gpu-l4-0"]["spec"]["taints"]


def test_gpu_pods_land_on_matching_gpu_nodes(kubectl):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gpu"}, "spec": {
        "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L4"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [{"name": "c", "image": "registry.invalid/x:1", "resources": {"limits": {"nvidia.com/gpu": 1}}}]}}
    greedy = {**pod, "metadata": {"name": "too-many"}}
    greedy["spec"] = {**pod["spec"], "containers": [{**pod["spec"]["containers"][0],
                                                     "resources": {"limits": {"nvidia.com/gpu": 5}}}]}
    untolerated = {**pod, "metadata": {"name": "no-toleration"}, "spec": {**pod["spec"], "tolerations": []}}
    kubectl.apply(pod, greedy, untolerated)
    wait_until(lambda: kubectl.get("pod", "gpu")["spec"].get("nodeName") == "gpu-l4-0", 30)
    for name, reason in (("too-many", "Insufficient nvidia.com/gpu"), ("no-toleration", "untolerated taint")):
        def unschedulable():
            conditions = kubectl.get("pod", name).get("status", {}).get("conditions", [])
            return next((c["message"] for c in conditions if c.get("reason") == "Unschedulable"), None)

        assert reason in wait_until(unschedulable, 30)


def test_deployments_run_and_are_collected(kubectl):
    kubectl("create", "deployment", "dummy", "--image=registry.invalid/dummy:1", "--replicas=2")
    kubectl("rollout", "status", "deployment/dummy", "--timeout=60s")
    assert all(p["spec"]["nodeName"].startswith("cpu-") for p in kubectl.get("pods", selector="app=dummy"))
    kubectl("delete", "deployment", "dummy")
    wait_until(lambda: not kubectl.get("pods", selector="app=dummy"), 30, message="pods collected")


def test_helm_installs_against_the_plane(cluster, namespace, tmp_path):
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\nkubeVersion: '>=1.34.0-0'\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: probe}\ndata: {kube: '{{ .Capabilities.KubeVersion.Version }}'}\n")
    env = cluster.env()
    env.update({f"HELM_{k}_HOME": str(tmp_path / k.lower()) for k in ("CACHE", "CONFIG", "DATA")})
    subprocess.run(["helm", "install", "probe", str(chart), "-n", namespace, "--wait", "--timeout=60s"], env=env,
                   check=True, capture_output=True, text=True)
    data = cluster.kubectl("-n", namespace, "get", "configmap", "probe", "-o", "jsonpath={.data.kube}").stdout
    assert data == pinned_version()
