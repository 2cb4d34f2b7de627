"""/api/system/gpu of a gateway on Kubernetes: the GPUs the cluster's (kwok) Nodes advertise —
nvidia.com/gpu capacity/allocatable and the nvidia.com/gpu.product label — read through the API."""

from __future__ import annotations

import json

import httpx
import pytest

pytestmark = pytest.mark.k8s


def test_gpu_status_lists_the_clusters_gpu_nodes(cluster, gateway):
    answer = httpx.get(f"{gateway.url}/api/system/gpu", timeout=30)
    assert answer.status_code == 200, gateway.log()[-3000:]
    body = answer.json()
    assert body["source"] == "kubernetes" and body["reason"] is None
    # Expected figures straight from kubectl, independently of the gateway's parsing.
    listed = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    expected = sorted(
        ({"node": n["metadata"]["name"], "product": n["metadata"]["labels"].get("nvidia.com/gpu.product"),
          "capacity": int(n["status"]["capacity"]["nvidia.com/gpu"]),
          "allocatable": int(n["status"]["allocatable"]["nvidia.com/gpu"])}
         for n in listed if "nvidia.com/gpu" in n["status"].get("capacity", {})), key=lambda n: n["node"])
    assert body["nodes"] == expected
    nodes = {n["node"]: n for n in body["nodes"]}
    assert set(nodes) == {"gpu-a100-0", "gpu-l4-0"}  # the CPU nodes are left out
    assert nodes["gpu-a100-0"]["allocatable"] == 8 and nodes["gpu-l4-0"]["product"] == "NVIDIA-L4"
    assert body["total_capacity"] == sum(n["capacity"] for n in expected)
    assert body["total_allocatable"] == sum(n["allocatable"] for n in expected)
