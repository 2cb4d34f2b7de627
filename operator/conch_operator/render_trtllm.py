"""Model (runtime tensorrt-llm) → the objects that serve it: the repository ConfigMap, the Triton
Deployment and its Service. Pure, like render.py, whose helpers it shares.

The TensorRT-LLM Triton image ships the model repositories' Python models under ALL_MODELS_DIR; the
Model's own config.pbtxt (and model.yaml) files come from conch_engines.tensorrt_llm. An init
container copies the image's repository into an emptyDir and lays the ConfigMap's files over it,
so the repository always matches the image's release and the Model's spec.
"""

from __future__ import annotations

from typing import Any

from conch_api import Model, TensorRTLLMBackend

from . import build_job, render
from .settings import OperatorSettings

CONFIG_DIR = "/models/config"
ENGINE_KEY_ANNOTATION = "conch.dev/engine-key"
# The Python-backend models (pre/post-processing, BLS, llmapi) pass tensors through /dev/shm,
# 64 MiB in a pod by default; NVIDIA's examples run with --shm-size=2g per server (one per GPU rank).
SHM_PER_GPU_GI = 2
# Loading an 8B engine (or, for pytorch, loading and warming up the checkpoint) takes minutes.
STARTUP_SECONDS = 30 * 60


def serving_objects(model: Model, settings: OperatorSettings) -> list[dict[str, Any]]:
    files = repository_files(model)  # rendered once: the ConfigMap holds them, the Deployment lists them
    config_map = repository_config_map(model, files)
    return [config_map, deployment(model, settings, config_map, sorted(files)), render.service(model)]


def uses_engine(model: Model) -> bool:
    return model.spec.trtllm.backend == TensorRTLLMBackend.ENGINE


def engine_key(model: Model) -> str:
    from conch_engines import tensorrt_llm

    return tensorrt_llm.cache_key(tensorrt_llm.engine_inputs(model.spec))


def repository_files(model: Model) -> dict[str, str]:
    """Relative path → content of the files overriding the image's repository templates."""
    from conch_engines import tensorrt_llm

    if uses_engine(model):
        return tensorrt_llm.ensemble_repository(model.spec, engine_key(model))
    return tensorrt_llm.llmapi_repository(model.spec, checkpoint_path(model))


def checkpoint_path(model: Model) -> str:
    """Where the pytorch backend finds the checkpoint inside the Triton pod."""
    pvc = model.spec.source.pvc
    return f"{render.SOURCE_DIR}/{pvc.path.lstrip('/')}" if pvc else render.SOURCE_DIR


def template_dir(model: Model) -> str:
    from conch_engines import tensorrt_llm

    return f"{tensorrt_llm.ALL_MODELS_DIR}/{'inflight_batcher_llm' if uses_engine(model) else 'llmapi'}"


def repository_config_map(model: Model, files: dict[str, str]) -> dict[str, Any]:
    data = {_config_key(path): content for path, content in sorted(files.items())}
    return render.owned_object("v1", "ConfigMap", render.Names(model.metadata.name).repository, model, data=data)


def deployment(model: Model, settings: OperatorSettings, config_map: dict[str, Any],
               files: list[str]) -> dict[str, Any]:
    """`files`: the repository files' paths, in the order the init container copies them."""
    from conch_engines import tensorrt_llm

    spec = model.spec
    names = render.Names(model.metadata.name)
    image = spec.images.triton if spec.images and spec.images.triton else settings.trtllm_triton_image
    gpus = spec.engine.tensorParallel
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": names.repository,
                                         "items": [{"key": _config_key(f), "path": f} for f in files]}},
        {"name": "repository", "emptyDir": {}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{SHM_PER_GPU_GI * gpus}Gi"}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "repository", "mountPath": render.REPOSITORY_DIR, "readOnly": True},
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    init_containers = []
    annotations = {render.CONFIG_HASH_ANNOTATION: render.config_hash(config_map)}
    if uses_engine(model):
        # Engines and tokenizer are read from the cache, never written by a server.
        volumes.append({"name": "cache", "persistentVolumeClaim": {"claimName": build_job.claim_name(model),
                                                                    "readOnly": True}})
        mounts.append({"name": "cache", "mountPath": tensorrt_llm.CACHE_MOUNT, "readOnly": True})
        annotations[ENGINE_KEY_ANNOTATION] = build_job.key_label(engine_key(model))
    else:
        source = spec.source
        if source.pvc:
            volumes.append({"name": "source", "persistentVolumeClaim": {"claimName": source.pvc.claimName,
                                                                         "readOnly": True}})
        else:
            volumes.append({"name": "source", "emptyDir": {}})
            init_containers.append(_download_container(model, image))
        mounts.append({"name": "source", "mountPath": render.SOURCE_DIR, "readOnly": True})
    init_containers.append(_repository_container(model, image, files))
    container = {
        "name": "triton",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": tensorrt_llm.serve_command(spec, render.REPOSITORY_DIR),
        "ports": [
            {"name": "http", "containerPort": render.HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": render.GRPC_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": render.METRICS_PORT, "protocol": "TCP"},
        ],
        "env": [{"name": "HOME", "value": "/tmp"}, *[e.model_dump(exclude_none=True) for e in spec.env or []]],
        "resources": gpu_resources(model, settings),
        "volumeMounts": mounts,
        "startupProbe": render.http_probe("/v2/health/ready", period=10, failures=STARTUP_SECONDS // 10),
        "readinessProbe": render.http_probe("/v2/health/ready", period=5, failures=3),
        "livenessProbe": render.http_probe("/v2/health/live", period=10, failures=6),
        "securityContext": render.container_security_context(),
    }
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": render.pod_security_context(),
        "initContainers": init_containers,
        "containers": [container],
        "volumes": volumes,
        # Requests in flight finish (Triton drains on SIGTERM) before the GPU is handed on.
        "terminationGracePeriodSeconds": 60,
        "nodeSelector": build_job.gpu_node_selector(model),
        "tolerations": build_job.gpu_tolerations(model),
    }
    if spec.affinity:
        pod_spec["affinity"] = spec.affinity
    return render.owned_object("apps/v1", "Deployment", names.workload, model, spec={
        "replicas": spec.replicas,
        "revisionHistoryLimit": 3,
        "selector": {"matchLabels": render.selector(model)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {"metadata": {"labels": render.labels(model), "annotations": annotations}, "spec": pod_spec},
    })


def gpu_resources(model: Model, settings: OperatorSettings) -> dict[str, Any]:
    """The Model's resources (or the GPU defaults), with exactly tensorParallel GPUs requested and
    limited: extended resources must be equal in both, and one replica spans its TP ranks."""
    resources = model.spec.resources
    if resources:
        requests, limits = dict(resources.requests or {}), dict(resources.limits or {})
    else:
        requests, limits = dict(settings.gpu_default_requests), {}
    gpus = str(model.spec.engine.tensorParallel)
    requests[render.GPU_RESOURCE] = limits[render.GPU_RESOURCE] = gpus
    return {"requests": requests, "limits": limits}


def _repository_container(model: Model, image: str, files: list[str]) -> dict[str, Any]:
    # Files are passed as arguments ("$@"), never spliced into the script.
    script = (
        'set -eu\n'
        f'cp -R {template_dir(model)}/. {render.REPOSITORY_DIR}/\n'
        f'chmod -R u+w {render.REPOSITORY_DIR}\n'  # the image's files may be read-only
        'for f in "$@"; do\n'
        f'  mkdir -p "{render.REPOSITORY_DIR}/$(dirname "$f")"\n'
        f'  cp -f "{CONFIG_DIR}/$f" "{render.REPOSITORY_DIR}/$f"\n'
        'done\n'
    )
    return {
        "name": "repository",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", script, "assemble-repository", *files],
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                         {"name": "repository", "mountPath": render.REPOSITORY_DIR}],
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
        "securityContext": render.container_security_context(),
    }


def _download_container(model: Model, image: str) -> dict[str, Any]:
    """The pytorch backend loads a checkpoint directory: fetched from Hugging Face before Triton starts.
    huggingface_hub's Python API rather than a CLI: its name changed across releases (hf, huggingface-cli)."""
    hf = model.spec.source.huggingFace
    env = [{"name": "HOME", "value": "/tmp"}, {"name": "HF_HOME", "value": "/tmp/huggingface"},
           *render.hf_token_env(model)]
    code = ("import sys; from huggingface_hub import snapshot_download; "
            "snapshot_download(repo_id=sys.argv[1], revision=sys.argv[2], local_dir=sys.argv[3])")
    return {
        "name": "download",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python3", "-c", code, hf.repoId, hf.revision, render.SOURCE_DIR],
        "env": env,
        "volumeMounts": [{"name": "source", "mountPath": render.SOURCE_DIR}, {"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": render.container_security_context(),
    }


def _config_key(path: str) -> str:
    return path.replace("/", "__")
