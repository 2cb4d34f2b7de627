"""Local Kubernetes control plane (etcd + apiserver + KCM + scheduler + kwok fake nodes)
built from pinned Go modules, for Conch's integration tests and local development."""

from .controlplane import ControlPlane
from .errors import ClusterError, ComponentDied, KubectlError
from .nodes import DEFAULT_NODES, GPU_RESOURCE, GPU_TAINT, NodeSpec
from .toolchain import K8S_VERSION, bin_dir, build, ensure

__all__ = [
    "DEFAULT_NODES",
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
