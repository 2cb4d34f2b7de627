"""The Kubernetes objects of a TensorRT-LLM engine build: the build Job and the engine-cache claim,
and the names that tie them to a cache key. Pure.

Neither is owned by a Model: one build Job per cache key and claim (Models with the same key and
the same claim share it), and the claim keeps hours of GPU work, so the operator never deletes it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from conch_api import Model
from conch_engines import tensorrt_llm

from ..settings import OperatorSettings
from . import kit

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


def uid_of(obj: dict[str, Any] | None) -> str:
    return (obj or {}).get("metadata", {}).get("uid") or ""


def key_label(key: str) -> str:
    return key[:63]


def claim_name(model: Model) -> str:
    return model.spec.trtllm.engineCache.claimName


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
                         "labels": kit.managed_labels("engine-cache")},
            "spec": spec}


def build_job(model: Model, key: str, attempt: int, settings: OperatorSettings, claim_uid: str) -> dict[str, Any]:
    spec = model.spec
    gpus = spec.engine.tensorParallel
    source_dir = None
    # NCCL (tensor-parallel calibration) and PyTorch workers exchange data through /dev/shm.
    scratch, scratch_mounts = kit.scratch_volumes(f"{8 * gpus}Gi")
    volumes: list[dict[str, Any]] = [{"name": "cache", "persistentVolumeClaim": {"claimName": claim_name(model)}},
                                     *scratch]
    mounts: list[dict[str, Any]] = [{"name": "cache", "mountPath": tensorrt_llm.CACHE_MOUNT}, *scratch_mounts]
    env: list[dict[str, Any]] = [
        {"name": "HOME", "value": "/tmp"},
        # Downloads land on the claim, so a retried build does not fetch the checkpoint again.
        {"name": "HF_HOME", "value": f"{tensorrt_llm.CACHE_MOUNT}/.huggingface"},
    ]
    source = spec.source
    if source.pvc:
        volumes.append({"name": "source", "persistentVolumeClaim": {"claimName": source.pvc.claimName,
                                                                     "readOnly": True}})
        mounts.append({"name": "source", "mountPath": kit.SOURCE_DIR, "readOnly": True})
        source_dir = f"{kit.SOURCE_DIR}/{source.pvc.path.lstrip('/')}"
    else:
        env += kit.hf_token_env(model)
    container = {
        "name": BUILDER_CONTAINER,
        "image": (spec.images.engineBuilder if spec.images and spec.images.engineBuilder
                  else settings.trtllm_builder_image),
        "imagePullPolicy": "IfNotPresent",
        "command": tensorrt_llm.builder_command(spec, key, source_dir),
        "workingDir": "/tmp",
        "env": env,
        "resources": {"requests": {**settings.build_requests, kit.GPU_RESOURCE: str(gpus)},
                      "limits": {kit.GPU_RESOURCE: str(gpus)}},
        "volumeMounts": mounts,
        # The builder writes a one-line reason on failure; without one the kubelet puts the log's
        # end into the termination message, so the operator never needs to read pod logs.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": kit.container_security_context(),
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        **kit.pod_basics(model),
        "containers": [container],
        "volumes": volumes,
        "nodeSelector": kit.gpu_node_selector(model),
        "tolerations": kit.gpu_tolerations(model),
    }
    labels = {**kit.managed_labels("engine-build"), ENGINE_KEY_LABEL: key_label(key)}
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
