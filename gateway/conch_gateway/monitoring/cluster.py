"""I/O adapter: the cluster's GPUs as its Nodes advertise them (read-only `list nodes`).

The NVIDIA device plugin puts `nvidia.com/gpu` in a Node's capacity/allocatable and GPU feature
discovery the `nvidia.com/gpu.product` label; a gateway on Kubernetes reports those, since the
GPUs serving the models are on other nodes than the gateway's own pod."""

from __future__ import annotations

from typing import Any

from .. import kubernetes_client
from .protocol import GPUStatus, NodeGPUs

GPU = "nvidia.com/gpu"
PRODUCT = "nvidia.com/gpu.product"


def node_gpus(nodes: list[dict[str, Any]]) -> list[NodeGPUs]:
    """Nodes with at least one GPU in capacity, from the API's JSON; pure."""
    out = []
    for node in nodes:
        status = node.get("status") or {}
        capacity = int((status.get("capacity") or {}).get(GPU, 0))
        if capacity <= 0:
            continue
        labels = (node.get("metadata") or {}).get("labels") or {}
        out.append(NodeGPUs(node=node["metadata"]["name"], product=labels.get(PRODUCT), capacity=capacity,
                            allocatable=int((status.get("allocatable") or {}).get(GPU, 0))))
    return sorted(out, key=lambda n: n.node)


async def cluster_gpus() -> GPUStatus:
    from kubernetes.aio import client, config
    from kubernetes.aio.client.exceptions import ApiException

    try:
        api_client = await kubernetes_client.api_client()
    except (config.ConfigException, OSError) as error:
        return GPUStatus(gpus=[], source="kubernetes", reason=f"no Kubernetes credentials: {error}")
    async with api_client as api:
        try:
            # Back to the API's JSON form, the same dicts `kubectl get nodes -o json` shows.
            listing = api.sanitize_for_serialization(await client.CoreV1Api(api).list_node())
        except ApiException as error:
            # A chart without nodes get/list RBAC: say so instead of failing the route.
            return GPUStatus(gpus=[], source="kubernetes", reason=f"cannot list nodes: {error.status} {error.reason}")
    nodes = node_gpus(listing.get("items", []))
    return GPUStatus(gpus=[], nodes=nodes, source="kubernetes",
                     total_capacity=sum(n.capacity for n in nodes), total_allocatable=sum(n.allocatable for n in nodes),
                     reason=None if nodes else f"no node advertises {GPU}")
