"""The Kubernetes objects of an engine build: the build Job and the engine-cache claim. Pure.

Neither is owned by a Model: one build Job per cache key and claim (Models with the same key and
the same claim share it), and the claim keeps hours of GPU work, so the operator never deletes it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from conch_api import Model

from . import render
from .settings import OperatorSettings

ENGINE_KEY_LABEL = "conch.dev/engine-key"
ATTEMPT_ANNOTATION = "conch.dev/build-attempt"
# The UID of the claim the Job writes into: a claim deleted and created under the same name is
# another claim, and a Job that succeeded for the old one built nothing in the new one.
CLAIM_UID_ANNOTATION = "conch.dev/engine-cache-uid"
REQUESTED_BY_ANNOTATION = "conch.dev/requested-by"
BUILDER_CONTAINER = "builder"
JOB_PREFIX = "conch-engine-"


# ------------------------------------------------------------------------------------------- names


def job_name(key: str, claim: str) -> str:
    """One Job per engine and claim: Models with the same key but different claims each need the
    engine in their own claim. Labels carry the name (job-name), so it stays within 63 characters."""
    return f"{JOB_PREFIX}{key[:20]}-{claim_hash(claim)}"


def claim_hash(claim: str) -> str:
    return hashlib.sha256(claim.encode()).hexdigest()[:8]


def uid_of(claim: dict[str, Any] | None) -> str:
    return (claim or {}).get("metadata", {}).get("uid") or ""


def key_label(key: str) -> str:
    return key[:63]


def claim_name(model: Model) -> str:
    return model.spec.trtllm.engineCache.claimName


def managed_labels(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "conch-engine", "app.kubernetes.io/managed-by": "conch-operator",
            render.COMPONENT_LABEL: component}


# ---------------------------------------------------------------------------------------- manifests


def cache_claim(model: Model) -> dict[str, Any]:
    """The engine cache. No ownerReference: it is shared by the namespace's Models and keeps
    hours of GPU work, so deleting a Model never deletes it."""
    cache = model.spec.trtllm.engineCache
    spec: dict[str, Any] = {"accessModes": [cache.accessMode], "resources": {"requests": {"storage": str(cache.size)}}}
    if cache.storageClassName is not None:
        spec["storageClassName"] = cache.storageClassName
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": cache.claimName, "namespace": model.metadata.namespace,
                         "labels": managed_labels("engine-cache")},
            "spec": spec}


def build_job(model: Model, key: str, attempt: int, settings: OperatorSettings, claim_uid: str) -> dict[str, Any]:
    from conch_engines import tensorrt_llm

    spec = model.spec
    gpus = spec.engine.tensorParallel
    source_dir = None
    volumes: list[dict[str, Any]] = [
        {"name": "cache", "persistentVolumeClaim": {"claimName": claim_name(model)}},
        # NCCL (tensor-parallel calibration) and PyTorch workers exchange data through /dev/shm,
        # which is 64 MiB in a pod unless a memory volume replaces it.
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{8 * gpus}Gi"}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "cache", "mountPath": tensorrt_llm.CACHE_MOUNT},
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    env: list[dict[str, Any]] = [
        {"name": "HOME", "value": "/tmp"},
        # Downloads land on the claim, so a retried build does not fetch the checkpoint again.
        {"name": "HF_HOME", "value": f"{tensorrt_llm.CACHE_MOUNT}/.huggingface"},
    ]
    source = spec.source
    if source.pvc:
        volumes.append({"name": "source", "persistentVolumeClaim": {"claimName": source.pvc.claimName,
                                                                     "readOnly": True}})
        mounts.append({"name": "source", "mountPath": render.SOURCE_DIR, "readOnly": True})
        source_dir = f"{render.SOURCE_DIR}/{source.pvc.path.lstrip('/')}"
    else:
        env += render.hf_token_env(model)
    container = {
        "name": BUILDER_CONTAINER,
        "image": (spec.images.engineBuilder if spec.images and spec.images.engineBuilder
                  else settings.trtllm_builder_image),
        "imagePullPolicy": "IfNotPresent",
        "command": tensorrt_llm.builder_command(spec, key, source_dir),
        "workingDir": "/tmp",
        "env": env,
        "resources": {"requests": {**settings.build_requests, render.GPU_RESOURCE: str(gpus)},
                      "limits": {render.GPU_RESOURCE: str(gpus)}},
        "volumeMounts": mounts,
        # The builder writes a one-line reason on failure; without one the kubelet puts the log's
        # end into the termination message, so the operator never needs to read pod logs.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": render.container_security_context(),
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": render.pod_security_context(),
        "containers": [container],
        "volumes": volumes,
        "nodeSelector": gpu_node_selector(model),
        "tolerations": gpu_tolerations(model),
    }
    if spec.affinity:
        pod_spec["affinity"] = spec.affinity
    labels = {**managed_labels("engine-build"), ENGINE_KEY_LABEL: key_label(key)}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(key, claim_name(model)), "namespace": model.metadata.namespace,
                     "labels": labels,
                     "annotations": {ATTEMPT_ANNOTATION: str(attempt), REQUESTED_BY_ANNOTATION: model.metadata.name,
                                     CLAIM_UID_ANNOTATION: claim_uid}},
        "spec": {
            "backoffLimit": settings.build_backoff_limit,
            "activeDeadlineSeconds": spec.trtllm.buildTimeoutSeconds,
            "ttlSecondsAfterFinished": settings.build_job_ttl_s,
            # A pod evicted or preempted says nothing about the build: it does not count as a failure.
            "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]},
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
        },
    }


def gpu_node_selector(model: Model) -> dict[str, str]:
    """An engine runs only on the GPU model it was built on: build and serving pods select the same product."""
    selector = {"kubernetes.io/os": "linux"}
    if model.spec.gpu and model.spec.gpu.product:
        selector[render.GPU_PRODUCT_LABEL] = model.spec.gpu.product
    return {**selector, **(model.spec.nodeSelector or {})}


def gpu_tolerations(model: Model) -> list[dict[str, Any]]:
    tolerations = [t.model_dump(exclude_none=True) for t in model.spec.tolerations or []]
    gpu = {"key": render.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
    return tolerations + ([gpu] if gpu not in tolerations else [])
