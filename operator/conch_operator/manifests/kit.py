"""What every manifest the operator renders shares: names, labels, ownership, addressing, probes,
security contexts, GPU placement, the Hugging Face token, and the one Triton pod and Deployment
skeleton that both runtimes fill in. Pure."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from conch_api import API_VERSION, KIND, Model

MODEL_LABEL = "conch.dev/model"
COMPONENT_LABEL = "app.kubernetes.io/component"
CONFIG_HASH_ANNOTATION = "conch.dev/config-hash"
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
REPOSITORY_DIR = "/models/repository"
SOURCE_DIR = "/models/source"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
TRITON_CONTAINER = "triton"


# ------------------------------------------------------------------------------ names and labels


@dataclass(frozen=True)
class Names:
    model: str

    @property
    def workload(self) -> str:
        return f"{self.model}-triton"

    @property
    def repository(self) -> str:
        return f"{self.model}-triton-repository"

    @property
    def triton_model(self) -> str:
        return self.model


def labels(model: Model) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "triton",
        "app.kubernetes.io/instance": model.metadata.name,
        "app.kubernetes.io/managed-by": "conch-operator",
        COMPONENT_LABEL: "triton",
        MODEL_LABEL: model.metadata.name,
    }


def selector(model: Model) -> dict[str, str]:
    return {MODEL_LABEL: model.metadata.name, COMPONENT_LABEL: "triton"}


def selector_string(model: Model) -> str:
    return ",".join(f"{k}={v}" for k, v in selector(model).items())


def managed_labels(component: str) -> dict[str, str]:
    """Labels of objects the operator manages but no Model owns (engine builds, cache, ledger)."""
    return {"app.kubernetes.io/name": "conch-engine", "app.kubernetes.io/managed-by": "conch-operator",
            COMPONENT_LABEL: component}


def owner_reference(model: Model) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": KIND, "name": model.metadata.name, "uid": model.metadata.uid,
            "controller": True, "blockOwnerDeletion": True}


def owned_object(api_version: str, kind: str, name: str, model: Model, **body: Any) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": model.metadata.namespace, "labels": labels(model),
                     "ownerReferences": [owner_reference(model)]},
        **body,
    }


def config_hash(config_map: dict[str, Any]) -> str:
    """Annotated on the pod template, so a changed repository rolls the pods."""
    return hashlib.sha256(json.dumps(config_map["data"], sort_keys=True).encode()).hexdigest()[:16]


def config_key(path: str) -> str:
    """A repository file's path as a ConfigMap key (which allows no '/')."""
    return path.replace("/", "__")


def repository_config_map(model: Model, files: dict[str, str]) -> dict[str, Any]:
    """The Triton model repository's files (relative path → content) as one ConfigMap."""
    data = {config_key(path): content for path, content in sorted(files.items())}
    return owned_object("v1", "ConfigMap", Names(model.metadata.name).repository, model, data=data)


# -------------------------------------------------------------------------------------- addressing


def endpoint(model: Model) -> str:
    """Where the gateway reaches an operator-managed Model's Triton (its Service's HTTP port)."""
    return f"http://{Names(model.metadata.name).workload}.{model.metadata.namespace}.svc:{HTTP_PORT}"


def grpc_address(model: Model) -> str:
    """host:port of the same Triton's gRPC endpoint: the gateway may stream over it, because Triton
    documents cancellation when a gRPC stream closes."""
    return f"{Names(model.metadata.name).workload}.{model.metadata.namespace}.svc:{GRPC_PORT}"


# ------------------------------------------------------------------------------ pods and containers


def http_probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "failureThreshold": failures,
            "timeoutSeconds": 3}


def container_security_context() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]}}


def pod_security_context() -> dict[str, Any]:
    # fsGroup: volumes (the engine cache claim too) are writable by the non-root user.
    return {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"}}


def pod_basics(model: Model) -> dict[str, Any]:
    """What every pod the operator runs has: no API token, no Service env, non-root, the user's affinity."""
    basics: dict[str, Any] = {"automountServiceAccountToken": False, "enableServiceLinks": False,
                              "securityContext": pod_security_context()}
    if model.spec.affinity:
        basics["affinity"] = model.spec.affinity
    return basics


def scratch_volumes(shm_size: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts) of a read-only-root pod's writable places: /dev/shm (Triton's Python
    backend, NCCL and PyTorch workers pass tensors through it; 64 MiB by default) and /tmp."""
    volumes = [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm_size}},
               {"name": "tmp", "emptyDir": {}}]
    mounts = [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "tmp", "mountPath": "/tmp"}]
    return volumes, mounts


def user_env(model: Model) -> list[dict[str, Any]]:
    return [{"name": "HOME", "value": "/tmp"}, *[e.model_dump(exclude_none=True) for e in model.spec.env or []]]


def hf_token_env(model: Model) -> list[dict[str, Any]]:
    """HF_TOKEN from the Model's token Secret, for gated repositories (nothing when it has none)."""
    source = model.spec.source
    ref = source.huggingFace.tokenSecretRef if source and source.huggingFace else None
    return [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}] if ref else []


def gpu_node_selector(model: Model) -> dict[str, str]:
    """An engine runs only on the GPU model it was built on: build and serving pods select the same product."""
    chosen = {"kubernetes.io/os": "linux"}
    if model.spec.gpu and model.spec.gpu.product:
        chosen[GPU_PRODUCT_LABEL] = model.spec.gpu.product
    return {**chosen, **(model.spec.nodeSelector or {})}


def gpu_tolerations(model: Model) -> list[dict[str, Any]]:
    """The user's tolerations plus the usual taint of GPU nodes."""
    tolerations = user_tolerations(model)
    gpu = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
    return tolerations + ([gpu] if gpu not in tolerations else [])


def cpu_node_selector(model: Model) -> dict[str, str]:
    return {"kubernetes.io/os": "linux", **(model.spec.nodeSelector or {})}


def user_tolerations(model: Model) -> list[dict[str, Any]]:
    return [t.model_dump(exclude_none=True) for t in model.spec.tolerations or []]


# ------------------------------------------------------------------------- the Triton skeleton


@dataclass(frozen=True)
class TritonPod:
    """What differs between the runtimes' Triton pods; everything else is the skeleton's."""

    image: str
    command: list[str]
    resources: dict[str, Any]
    node_selector: dict[str, str]
    tolerations: list[dict[str, Any]]
    startup_period_s: int  # the startup probe covers loading the model, so liveness need not
    startup_failures: int
    termination_grace_s: int  # covers shutdown_delay() and Triton's own drain after SIGTERM
    volumes: list[dict[str, Any]]  # with scratch_volumes() among them: the root filesystem is read-only
    mounts: list[dict[str, Any]]
    init_containers: list[dict[str, Any]] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)


def shutdown_delay(termination_grace_s: int) -> int:
    """Seconds a stopping Triton pod keeps serving before it gets SIGTERM (its preStop hook): the
    endpoint leaves the Service and kube-proxy's rules meanwhile, so requests still routed to it
    (kept-alive connections, streams in flight) finish instead of being aborted by a rollout or a
    scale-down. Half the grace period: the other half is Triton's own drain (--exit-timeout-secs)."""
    return termination_grace_s // 2


def triton_deployment(model: Model, pod: TritonPod) -> dict[str, Any]:
    """The Deployment of a Model's Triton: ports, probes, security, rolling updates that keep a
    ready replica and let a stopping one finish its requests."""
    container = {
        "name": TRITON_CONTAINER,
        "image": pod.image,
        "imagePullPolicy": "IfNotPresent",
        "command": pod.command,
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "env": user_env(model),
        "resources": pod.resources,
        "volumeMounts": pod.mounts,
        "startupProbe": http_probe("/v2/health/ready", period=pod.startup_period_s, failures=pod.startup_failures),
        "readinessProbe": http_probe("/v2/health/ready", period=5, failures=3),
        "livenessProbe": http_probe("/v2/health/live", period=10, failures=6),
        # exec `sleep`, not the sleep action: clusters before Kubernetes 1.30 lack that.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(shutdown_delay(pod.termination_grace_s))]}}},
        "securityContext": container_security_context(),
    }
    pod_spec: dict[str, Any] = {
        **pod_basics(model),
        **({"initContainers": pod.init_containers} if pod.init_containers else {}),
        "containers": [container],
        "volumes": pod.volumes,
        "terminationGracePeriodSeconds": pod.termination_grace_s,
        "nodeSelector": pod.node_selector,
        **({"tolerations": pod.tolerations} if pod.tolerations else {}),
    }
    return owned_object("apps/v1", "Deployment", Names(model.metadata.name).workload, model, spec={
        "replicas": model.spec.replicas,
        "revisionHistoryLimit": 3,
        "selector": {"matchLabels": selector(model)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {"metadata": {"labels": labels(model), "annotations": pod.annotations}, "spec": pod_spec},
    })


def triton_service(model: Model) -> dict[str, Any]:
    return owned_object("v1", "Service", Names(model.metadata.name).workload, model, spec={
        "type": "ClusterIP",
        "selector": selector(model),
        "ports": [
            {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
            {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP"},
            {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"},
        ],
    })
