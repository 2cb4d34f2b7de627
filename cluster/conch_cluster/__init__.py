"""Local Kubernetes cluster (etcd + apiserver + KCM + scheduler + kwok fake nodes, and optionally a
real node with an ingress) built from pinned Go modules, for Conch's tests and local development."""

from .controlplane import ControlPlane
from .errors import ClusterError, ComponentDied, KubectlError
from .nodes import DEFAULT_NODES, GPU_NODES, GPU_RESOURCE, GPU_TAINT, NodeSpec
from .toolchain import K8S_VERSION, bin_dir, build, ensure

__all__ = [
    "DEFAULT_NODES",
    "GPU_NODES",
    "GPU_RESOURCE",
    "GPU_TAINT",
    "K8S_VERSION",
    "ClusterError",
    "ComponentDied",
    "ControlPlane",
    "KubectlError",
    "NodeSpec",
    "bin_dir",
    "build",
    "ensure",
]
