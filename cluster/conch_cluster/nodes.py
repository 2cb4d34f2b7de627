"""Fake nodes simulated by kwok. Next to a real node (node.py) only the GPU ones are made: CPU pods
then run for real."""

from __future__ import annotations

from dataclasses import dataclass, field

# kwok only manages nodes carrying this annotation (see the kwok --manage-nodes-* flags).
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}


@dataclass(frozen=True)
class NodeSpec:
    name: str
    cpu: str = "16"
    memory: str = "64Gi"
    pods: int = 110
    gpus: int = 0
    gpu_product: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()

    def manifest(self) -> dict:
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "kwok",
        }
        resources = {"cpu": self.cpu, "memory": self.memory, "pods": str(self.pods)}
        taints = list(self.taints)
        if self.gpus:
            # Labels as published by NVIDIA GPU feature discovery, so operators can
            # select on them exactly as on a real cluster.
            labels[f"{GPU_RESOURCE}.count"] = str(self.gpus)
            labels[f"{GPU_RESOURCE}.present"] = "true"
            if self.gpu_product:
                labels[f"{GPU_RESOURCE}.product"] = self.gpu_product
            resources[GPU_RESOURCE] = str(self.gpus)
            if GPU_TAINT not in taints:
                taints.append(GPU_TAINT)
        labels.update(self.labels)
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": labels,
                "annotations": {
                    KWOK_ANNOTATION[0]: KWOK_ANNOTATION[1],
                    "node.alpha.kubernetes.io/ttl": "0",
                },
            },
            # No kwok.x-k8s.io/node NoSchedule taint: ordinary Deployments must land here.
            "spec": {"taints": taints} if taints else {},
            # Status is accepted on create; kwok keeps it and adds conditions/addresses.
            "status": {"capacity": resources, "allocatable": dict(resources)},
        }


GPU_NODES: tuple[NodeSpec, ...] = (
    NodeSpec("gpu-a100-0", cpu="96", memory="1024Gi", gpus=8, gpu_product="NVIDIA-A100-SXM4-80GB"),
    NodeSpec("gpu-l4-0", cpu="48", memory="192Gi", gpus=4, gpu_product="NVIDIA-L4"),
)
DEFAULT_NODES: tuple[NodeSpec, ...] = (NodeSpec("cpu-0"), NodeSpec("cpu-1"), *GPU_NODES)
