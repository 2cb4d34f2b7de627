"""Model → the Kubernetes objects that serve it. Pure: no I/O, so every manifest is unit-testable
and every reconcile (create, update, resume, timer) renders exactly the same desired state."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from conch_api import API_VERSION, KIND, Model, Runtime, TensorInterface, TensorRTLLMBackend
from conch_engines import repository

from .settings import OperatorSettings

MODEL_LABEL = "conch.dev/model"
COMPONENT_LABEL = "app.kubernetes.io/component"
CONFIG_HASH_ANNOTATION = "conch.dev/config-hash"
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
REPOSITORY_DIR = "/models/repository"
SOURCE_DIR = "/models/source"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"


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


def owner_reference(model: Model) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": KIND, "name": model.metadata.name, "uid": model.metadata.uid,
            "controller": True, "blockOwnerDeletion": True}


def endpoint(model: Model) -> str | None:
    """Where the gateway reaches the model's Triton, once it serves."""
    if model.spec.runtime == Runtime.EXTERNAL:
        return model.spec.external.url.rstrip("/")
    return f"http://{Names(model.metadata.name).workload}.{model.metadata.namespace}.svc:{HTTP_PORT}"


def grpc_address(model: Model) -> str | None:
    """host:port of the same Triton's gRPC endpoint: the gateway streams over it, because Triton
    cancels a request when its gRPC stream closes but not when an HTTP client goes away."""
    if model.spec.runtime == Runtime.EXTERNAL:
        return model.spec.external.grpcAddress
    return f"{Names(model.metadata.name).workload}.{model.metadata.namespace}.svc:{GRPC_PORT}"


def triton_model(model: Model) -> str:
    if model.spec.runtime == Runtime.EXTERNAL:
        return model.spec.external.tritonModel
    if model.spec.runtime == Runtime.TENSORRT_LLM:
        from conch_engines import tensorrt_llm

        return (tensorrt_llm.LLMAPI_TRITON_MODEL if model.spec.trtllm.backend == TensorRTLLMBackend.PYTORCH
                else tensorrt_llm.ENSEMBLE_TRITON_MODEL)
    return Names(model.metadata.name).triton_model


def interface(model: Model) -> TensorInterface:
    if model.spec.runtime == Runtime.EXTERNAL:
        return model.spec.external.interface
    if model.spec.runtime == Runtime.TENSORRT_LLM and model.spec.trtllm.backend == TensorRTLLMBackend.PYTORCH:
        return TensorInterface.LLMAPI
    return TensorInterface.ENSEMBLE


def desired_objects(model: Model, settings: OperatorSettings) -> list[dict[str, Any]]:
    """Everything the Model owns (external Models own nothing). For tensorrt-llm these are the
    serving objects only: the reconciler applies them once the engine is ready."""
    if model.spec.runtime == Runtime.LLAMA_CPP:
        config_map = repository_config_map(model)
        return [config_map, deployment(model, settings, config_hash(config_map)), service(model)]
    if model.spec.runtime == Runtime.TENSORRT_LLM:
        from . import render_trtllm  # it builds on this module's helpers

        return render_trtllm.serving_objects(model, settings)
    return []


def repository_config_map(model: Model) -> dict[str, Any]:
    names = Names(model.metadata.name)
    files = repository.llama_cpp_files(names.triton_model, gguf_path(model), n_ctx=model.spec.engine.maxSeqLen,
                                       n_threads=cpu_threads(model))
    data = {key.replace("/", "__"): content for key, content in files.items()}
    return owned_object("v1", "ConfigMap", names.repository, model, data=data)


def gguf_path(model: Model) -> str:
    source = model.spec.source
    if source.file:
        return source.file.path
    if source.pvc:
        return f"{SOURCE_DIR}/{source.pvc.path.lstrip('/')}"
    return f"{SOURCE_DIR}/{source.huggingFace.filename}"


def cpu_threads(model: Model) -> int:
    """llama.cpp threads: the CPU limit (or request) when it is a whole number, else all cores."""
    resources = model.spec.resources
    for bucket in (resources.limits if resources else None, resources.requests if resources else None):
        cpu = (bucket or {}).get("cpu")
        if isinstance(cpu, int) or (isinstance(cpu, str) and cpu.isdigit()):
            return int(cpu)
    return 0


def config_hash(config_map: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config_map["data"], sort_keys=True).encode()).hexdigest()[:16]


def deployment(model: Model, settings: OperatorSettings, repository_hash: str) -> dict[str, Any]:
    names = Names(model.metadata.name)
    spec = model.spec
    pod_labels = labels(model)
    volumes, mounts = _volumes(model, names)
    container = {
        "name": "triton",
        "image": (spec.images.triton if spec.images and spec.images.triton else settings.cpu_triton_image),
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "conch_engines", "serve", f"--model-repository={REPOSITORY_DIR}",
                    "--workdir=/tmp/triton", f"--http-port={HTTP_PORT}"],
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "env": [{"name": "HOME", "value": "/tmp"}, *[e.model_dump(exclude_none=True) for e in spec.env or []]],
        "resources": _resources(model, settings),
        "volumeMounts": mounts,
        # Loading a model can take minutes; the startup probe covers it so liveness need not.
        "startupProbe": http_probe("/v2/health/ready", period=5, failures=120),
        "readinessProbe": http_probe("/v2/health/ready", period=5, failures=3),
        "livenessProbe": http_probe("/v2/health/live", period=10, failures=6),
        "securityContext": container_security_context(),
    }
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": volumes,
        "terminationGracePeriodSeconds": 30,
        "nodeSelector": {"kubernetes.io/os": "linux", **(spec.nodeSelector or {})},
    }
    init = _download_container(model, settings)
    if init:
        pod_spec["initContainers"] = [init]
    if spec.tolerations:
        pod_spec["tolerations"] = [t.model_dump(exclude_none=True) for t in spec.tolerations]
    if spec.affinity:
        pod_spec["affinity"] = spec.affinity
    return owned_object("apps/v1", "Deployment", names.workload, model, spec={
        "replicas": spec.replicas,
        "revisionHistoryLimit": 3,
        "selector": {"matchLabels": selector(model)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {
            "metadata": {"labels": pod_labels, "annotations": {CONFIG_HASH_ANNOTATION: repository_hash}},
            "spec": pod_spec,
        },
    })


def service(model: Model) -> dict[str, Any]:
    return owned_object("v1", "Service", Names(model.metadata.name).workload, model, spec={
        "type": "ClusterIP",
        "selector": selector(model),
        "ports": [
            {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
            {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP"},
            {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"},
        ],
    })


def container_security_context() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]}}


def pod_security_context() -> dict[str, Any]:
    # fsGroup: volumes (the engine cache claim too) are writable by the non-root user.
    return {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"}}


def owned_object(api_version: str, kind: str, name: str, model: Model, **body: Any) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": model.metadata.namespace, "labels": labels(model),
                     "ownerReferences": [owner_reference(model)]},
        **body,
    }


def http_probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "failureThreshold": failures,
            "timeoutSeconds": 3}


def _resources(model: Model, settings: OperatorSettings) -> dict[str, Any]:
    if model.spec.resources:
        return model.spec.resources.model_dump(exclude_none=True)
    return {"requests": dict(settings.cpu_default_requests)}


def _volumes(model: Model, names: Names) -> tuple[list[dict], list[dict]]:
    repo_items = [{"key": key.replace("/", "__"), "path": key}
                  for key in repository.llama_cpp_files(names.triton_model, "").keys()]
    volumes = [
        {"name": "repository", "configMap": {"name": names.repository, "items": repo_items}},
        # Triton's Python backend exchanges tensors through shared memory.
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts = [
        {"name": "repository", "mountPath": REPOSITORY_DIR, "readOnly": True},
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    source = model.spec.source
    if source and source.pvc:
        volumes.append({"name": "source", "persistentVolumeClaim": {"claimName": source.pvc.claimName, "readOnly": True}})
        mounts.append({"name": "source", "mountPath": SOURCE_DIR, "readOnly": True})
    elif source and source.huggingFace:
        volumes.append({"name": "source", "emptyDir": {}})
        mounts.append({"name": "source", "mountPath": SOURCE_DIR, "readOnly": True})
    return volumes, mounts


def hf_token_env(model: Model) -> list[dict[str, Any]]:
    """HF_TOKEN from the Model's token Secret, for gated repositories (nothing when it has none)."""
    source = model.spec.source
    ref = source.huggingFace.tokenSecretRef if source and source.huggingFace else None
    return [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}] if ref else []


def _download_container(model: Model, settings: OperatorSettings) -> dict[str, Any] | None:
    """Hugging Face sources are fetched by an init container into the pod's source volume."""
    source = model.spec.source
    if not (source and source.huggingFace):
        return None
    hf = source.huggingFace
    # `hf` is huggingface_hub's CLI since 1.0 (which dropped `huggingface-cli`).
    command = ["hf", "download", hf.repoId, "--revision", hf.revision, "--local-dir", SOURCE_DIR]
    if hf.filename:
        command.insert(3, hf.filename)
    env = [{"name": "HOME", "value": "/tmp"}, *hf_token_env(model)]
    return {
        "name": "download",
        "image": (model.spec.images.triton if model.spec.images and model.spec.images.triton
                  else settings.cpu_triton_image),
        "command": command,
        "env": env,
        "volumeMounts": [{"name": "source", "mountPath": SOURCE_DIR}, {"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": container_security_context(),
    }
