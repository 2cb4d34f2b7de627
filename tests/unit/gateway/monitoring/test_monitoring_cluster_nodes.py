"""Parsing Nodes' GPU resources and labels (pure)."""

from __future__ import annotations

from conch_gateway.monitoring.cluster import node_gpus


def _node(name, capacity=None, allocatable=None, product=None):
    labels = {"nvidia.com/gpu.product": product} if product else {}
    status = {"capacity": {"cpu": "4", **({"nvidia.com/gpu": capacity} if capacity else {})},
              "allocatable": {"cpu": "4", **({"nvidia.com/gpu": allocatable} if allocatable else {})}}
    return {"metadata": {"name": name, "labels": labels}, "status": status}


def test_only_gpu_nodes_sorted_with_counts_and_product():
    nodes = node_gpus([_node("z-gpu", "4", "3", "NVIDIA-L4"), _node("cpu"), _node("a-gpu", "8", "8")])
    assert [(n.node, n.product, n.capacity, n.allocatable) for n in nodes] == [
        ("a-gpu", None, 8, 8), ("z-gpu", "NVIDIA-L4", 4, 3)]


def test_zero_capacity_and_missing_status_are_skipped():
    assert node_gpus([_node("zero", "0", "0"), {"metadata": {"name": "bare"}}]) == []
