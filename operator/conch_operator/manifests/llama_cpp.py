"""Model (runtime llama-cpp) → its repository ConfigMap, Triton Deployment and Service: a GGUF
file served on CPU by the llama.cpp Python-backend model of conch_engines. Pure."""

from __future__ import annotations

from typing import Any

from conch_api import Model, TensorInterface
from conch_engines import repository

from ..settings import OperatorSettings
from . import kit


def serving_objects(model: Model, settings: OperatorSettings) -> list[dict[str, Any]]:
    config_map = kit.repository_config_map(model, repository_files(model))
    return [config_map, deployment(model, settings, kit.config_hash(config_map)), kit.triton_service(model)]


def triton_model(model: Model) -> str:
    return kit.Names(model.metadata.name).triton_model


def interface(model: Model) -> TensorInterface:
    return TensorInterface.ENSEMBLE


def repository_files(model: Model) -> dict[str, str]:
    options = model.spec.llama_cpp
    return repository.llama_cpp_files(triton_model(model), gguf_path(model), n_ctx=model.spec.engine.maxSeqLen,
                                      n_threads=cpu_threads(model), slots=model.spec.engine.maxBatchSize,
                                      max_queue=options.maxQueue, prefix_cache=options.prefixCache,
                                      batch_invariant=options.batchInvariant)


def gguf_path(model: Model) -> str:
    source = model.spec.source
    if source.file:
        return source.file.path
    if source.pvc:
        return f"{kit.SOURCE_DIR}/{source.pvc.path.lstrip('/')}"
    return f"{kit.SOURCE_DIR}/{source.huggingFace.filename}"


def cpu_threads(model: Model) -> int:
    """llama.cpp threads: the CPU limit (or request) when it is a whole number, else all cores."""
    resources = model.spec.resources
    for bucket in (resources.limits if resources else None, resources.requests if resources else None):
        cpu = (bucket or {}).get("cpu")
        if isinstance(cpu, int) or (isinstance(cpu, str) and cpu.isdigit()):
            return int(cpu)
    return 0


def deployment(model: Model, settings: OperatorSettings, repository_hash: str) -> dict[str, Any]:
    spec = model.spec
    image = spec.images.triton if spec.images and spec.images.triton else settings.cpu_triton_image
    volumes, mounts = _volumes(model)
    init = _download_container(model, image)
    return kit.triton_deployment(model, kit.TritonPod(
        image=image,
        command=["python", "-m", "conch_engines", "serve", f"--model-repository={kit.REPOSITORY_DIR}",
                 "--workdir=/tmp/triton", f"--http-port={kit.HTTP_PORT}"],
        resources=(spec.resources.model_dump(exclude_none=True) if spec.resources
                   else {"requests": dict(settings.cpu_default_requests)}),
        node_selector=kit.cpu_node_selector(model),
        tolerations=kit.user_tolerations(model),
        startup_period_s=5,
        startup_failures=120,
        termination_grace_s=30,
        volumes=volumes,
        mounts=mounts,
        init_containers=[init] if init else [],
        annotations={kit.CONFIG_HASH_ANNOTATION: repository_hash},
    ))


def _volumes(model: Model) -> tuple[list[dict], list[dict]]:
    names = kit.Names(model.metadata.name)
    paths = list(repository.llama_cpp_files(names.triton_model, "").keys())
    items = [{"key": kit.config_key(path), "path": path} for path in paths]
    scratch, scratch_mounts = kit.scratch_volumes("1Gi")
    volumes = [{"name": "repository", "configMap": {"name": names.repository, "items": items}}, *scratch]
    # One mount per file: a ConfigMap volume's root also holds the kubelet's `..data` and
    # `..<timestamp>` entries, which Triton takes for models that fail to load (and then exits).
    # The files never change under a running pod: a new repository rolls the pods (config hash).
    mounts = [*({"name": "repository", "mountPath": f"{kit.REPOSITORY_DIR}/{path}", "subPath": path, "readOnly": True}
                for path in paths), *scratch_mounts]
    source = model.spec.source
    if source and source.pvc:
        volumes.append({"name": "source", "persistentVolumeClaim": {"claimName": source.pvc.claimName, "readOnly": True}})
        mounts.append({"name": "source", "mountPath": kit.SOURCE_DIR, "readOnly": True})
    elif source and source.huggingFace:
        volumes.append({"name": "source", "emptyDir": {}})
        mounts.append({"name": "source", "mountPath": kit.SOURCE_DIR, "readOnly": True})
    return volumes, mounts


def _download_container(model: Model, image: str) -> dict[str, Any] | None:
    """Hugging Face sources are fetched by an init container into the pod's source volume."""
    source = model.spec.source
    if not (source and source.huggingFace):
        return None
    hf = source.huggingFace
    # `hf` is huggingface_hub's CLI since 1.0 (which dropped `huggingface-cli`).
    command = ["hf", "download", hf.repoId, "--revision", hf.revision, "--local-dir", kit.SOURCE_DIR]
    if hf.filename:
        command.insert(3, hf.filename)
    return {
        "name": "download",
        "image": image,
        "command": command,
        "env": [{"name": "HOME", "value": "/tmp"}, *kit.hf_token_env(model)],
        "volumeMounts": [{"name": "source", "mountPath": kit.SOURCE_DIR}, {"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": kit.container_security_context(),
    }
