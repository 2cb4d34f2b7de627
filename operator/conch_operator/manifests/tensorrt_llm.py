"""Model (runtime tensorrt-llm) → its repository ConfigMap, GPU Triton Deployment and Service. Pure.

The TensorRT-LLM Triton image ships the model repositories' Python models under ALL_MODELS_DIR; the
Model's own config.pbtxt (and model.yaml) files come from conch_engines.tensorrt_llm. An init
container copies the image's repository into an emptyDir and lays the ConfigMap's files over it,
so the repository always matches the image's release and the Model's spec.
"""

from __future__ import annotations

from typing import Any

from conch_api import Model, TensorInterface, TensorRTLLMBackend
from conch_engines import tensorrt_llm

from ..settings import OperatorSettings
from . import kit
from .build_job import claim_name, key_label

CONFIG_DIR = "/models/config"
ENGINE_KEY_ANNOTATION = "conch.dev/engine-key"
# The Python-backend models (pre/post-processing, BLS, llmapi) pass tensors through /dev/shm,
# 64 MiB in a pod by default; NVIDIA's examples run with --shm-size=2g per server (one per GPU rank).
SHM_PER_GPU_GI = 2
# Loading an 8B engine (or, for pytorch, loading and warming up the checkpoint) takes minutes.
STARTUP_SECONDS = 30 * 60


def serving_objects(model: Model, settings: OperatorSettings) -> list[dict[str, Any]]:
    files = repository_files(model)  # rendered once: the ConfigMap holds them, the Deployment lists them
    config_map = kit.repository_config_map(model, files)
    return [config_map, deployment(model, settings, config_map, sorted(files)), kit.triton_service(model)]


def uses_engine(model: Model) -> bool:
    return model.spec.trtllm.backend == TensorRTLLMBackend.ENGINE


def triton_model(model: Model) -> str:
    return tensorrt_llm.ENSEMBLE_TRITON_MODEL if uses_engine(model) else tensorrt_llm.LLMAPI_TRITON_MODEL


def interface(model: Model) -> TensorInterface:
    return TensorInterface.ENSEMBLE if uses_engine(model) else TensorInterface.LLMAPI


def engine_key(model: Model) -> str:
    return tensorrt_llm.cache_key(tensorrt_llm.engine_inputs(model.spec))


def repository_files(model: Model) -> dict[str, str]:
    """Relative path → content of the files overriding the image's repository templates."""
    if uses_engine(model):
        return tensorrt_llm.ensemble_repository(model.spec, engine_key(model))
    return tensorrt_llm.llmapi_repository(model.spec, checkpoint_path(model))


def checkpoint_path(model: Model) -> str:
    """Where the pytorch backend finds the checkpoint inside the Triton pod."""
    pvc = model.spec.source.pvc
    return f"{kit.SOURCE_DIR}/{pvc.path.lstrip('/')}" if pvc else kit.SOURCE_DIR


def template_dir(model: Model) -> str:
    return f"{tensorrt_llm.ALL_MODELS_DIR}/{'inflight_batcher_llm' if uses_engine(model) else 'llmapi'}"


def deployment(model: Model, settings: OperatorSettings, config_map: dict[str, Any],
               files: list[str]) -> dict[str, Any]:
    """`files`: the repository files' paths, in the order the init container copies them."""
    spec = model.spec
    names = kit.Names(model.metadata.name)
    image = spec.images.triton if spec.images and spec.images.triton else settings.trtllm_triton_image
    scratch, scratch_mounts = kit.scratch_volumes(f"{SHM_PER_GPU_GI * spec.engine.tensorParallel}Gi")
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": names.repository,
                                         "items": [{"key": kit.config_key(f), "path": f} for f in files]}},
        {"name": "repository", "emptyDir": {}},
        *scratch,
    ]
    mounts: list[dict[str, Any]] = [{"name": "repository", "mountPath": kit.REPOSITORY_DIR, "readOnly": True},
                                    *scratch_mounts]
    init_containers = []
    annotations = {kit.CONFIG_HASH_ANNOTATION: kit.config_hash(config_map)}
    if uses_engine(model):
        # Engines and tokenizer are read from the cache, never written by a server.
        volumes.append({"name": "cache", "persistentVolumeClaim": {"claimName": claim_name(model), "readOnly": True}})
        mounts.append({"name": "cache", "mountPath": tensorrt_llm.CACHE_MOUNT, "readOnly": True})
        annotations[ENGINE_KEY_ANNOTATION] = key_label(engine_key(model))
    else:
        source = spec.source
        if source.pvc:
            volumes.append({"name": "source", "persistentVolumeClaim": {"claimName": source.pvc.claimName,
                                                                         "readOnly": True}})
        else:
            volumes.append({"name": "source", "emptyDir": {}})
            init_containers.append(_download_container(model, image))
        mounts.append({"name": "source", "mountPath": kit.SOURCE_DIR, "readOnly": True})
    init_containers.append(_repository_container(model, image, files))
    return kit.triton_deployment(model, kit.TritonPod(
        image=image,
        command=tensorrt_llm.serve_command(spec, kit.REPOSITORY_DIR),
        resources=gpu_resources(model, settings),
        node_selector=kit.gpu_node_selector(model),
        tolerations=kit.gpu_tolerations(model),
        startup_period_s=10,
        startup_failures=STARTUP_SECONDS // 10,
        # Requests in flight finish (Triton drains on SIGTERM) before the GPU is handed on.
        termination_grace_s=60,
        volumes=volumes,
        mounts=mounts,
        init_containers=init_containers,
        annotations=annotations,
    ))


def gpu_resources(model: Model, settings: OperatorSettings) -> dict[str, Any]:
    """The Model's resources (or the GPU defaults), with exactly tensorParallel GPUs requested and
    limited: extended resources must be equal in both, and one replica spans its TP ranks."""
    resources = model.spec.resources
    if resources:
        requests, limits = dict(resources.requests or {}), dict(resources.limits or {})
    else:
        requests, limits = dict(settings.gpu_default_requests), {}
    gpus = str(model.spec.engine.tensorParallel)
    requests[kit.GPU_RESOURCE] = limits[kit.GPU_RESOURCE] = gpus
    return {"requests": requests, "limits": limits}


def _repository_container(model: Model, image: str, files: list[str]) -> dict[str, Any]:
    # Files are passed as arguments ("$@"), never spliced into the script.
    script = (
        'set -eu\n'
        f'cp -R {template_dir(model)}/. {kit.REPOSITORY_DIR}/\n'
        f'chmod -R u+w {kit.REPOSITORY_DIR}\n'  # the image's files may be read-only
        'for f in "$@"; do\n'
        f'  mkdir -p "{kit.REPOSITORY_DIR}/$(dirname "$f")"\n'
        f'  cp -f "{CONFIG_DIR}/$f" "{kit.REPOSITORY_DIR}/$f"\n'
        'done\n'
    )
    return {
        "name": "repository",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", script, "assemble-repository", *files],
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                         {"name": "repository", "mountPath": kit.REPOSITORY_DIR}],
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
        "securityContext": kit.container_security_context(),
    }


def _download_container(model: Model, image: str) -> dict[str, Any]:
    """The pytorch backend loads a checkpoint directory: fetched from Hugging Face before Triton starts.
    huggingface_hub's Python API rather than a CLI: its name changed across releases (hf, huggingface-cli)."""
    hf = model.spec.source.huggingFace
    env = [{"name": "HOME", "value": "/tmp"}, {"name": "HF_HOME", "value": "/tmp/huggingface"},
           *kit.hf_token_env(model)]
    code = ("import sys; from huggingface_hub import snapshot_download; "
            "snapshot_download(repo_id=sys.argv[1], revision=sys.argv[2], local_dir=sys.argv[3])")
    return {
        "name": "download",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python3", "-c", code, hf.repoId, hf.revision, kit.SOURCE_DIR],
        "env": env,
        "volumeMounts": [{"name": "source", "mountPath": kit.SOURCE_DIR}, {"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": kit.container_security_context(),
    }
