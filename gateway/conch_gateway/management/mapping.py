"""Pure mapping between seed 003's model body and a Model resource (no I/O).

A field with no home in the Model spec is a 400 naming it (`UnmappableField`), never dropped.
Seed 003's descriptive fields (description, tags, priority) and llama.cpp's thread count, which
the spec has no field for, are kept as annotations so a GET returns what was created.
"""

from __future__ import annotations

import json
import re
from typing import Any

from conch_api.model import GROUP, Model, ModelSpec, Phase

from .protocol import ModelCreate, ModelItem

ANNOTATION = f"{GROUP}/management"  # JSON: description, tags, priority, n_threads
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # the CRD: a DNS-1035 label (it names a Service)

_FRAMEWORKS = {
    "llama.cpp": "llama-cpp", "llama-cpp": "llama-cpp", "llamacpp": "llama-cpp", "gguf": "llama-cpp",
    "tensorrt-llm": "tensorrt-llm", "tensorrt_llm": "tensorrt-llm", "trtllm": "tensorrt-llm",
}
_SEED_FRAMEWORK = {"llama-cpp": "llama.cpp", "tensorrt-llm": "tensorrt-llm", "external": "external"}


class UnmappableField(ValueError):
    """A field of the body that the Model spec cannot express."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def _source(path: str) -> dict[str, Any]:
    """`hf://owner/repo/file.gguf`, `pvc://claim/path` or an absolute path inside the image."""
    if path.startswith("hf://"):
        parts = path[5:].split("/")
        if len(parts) < 2:
            raise UnmappableField("config.model_path", "hf:// needs owner/repo[/filename]")
        repo = "/".join(parts[:2])
        filename = "/".join(parts[2:]) or None
        return {"huggingFace": {"repoId": repo, **({"filename": filename} if filename else {})}}
    if path.startswith("pvc://"):
        claim, _, inner = path[6:].partition("/")
        if not claim or not inner:
            raise UnmappableField("config.model_path", "pvc:// needs claim/path")
        return {"pvc": {"claimName": claim, "path": inner}}
    if path.startswith("/"):
        return {"file": {"path": path}}
    raise UnmappableField("config.model_path", "model_path must be an absolute path, hf://owner/repo/file or pvc://claim/path")


def to_spec(body: ModelCreate) -> tuple[dict[str, Any], dict[str, str]]:
    """Seed 003's create body → (Model spec as a dict, annotations)."""
    if not _NAME.match(body.name):
        raise UnmappableField("name", "name must start with a letter and hold lowercase letters, digits and '-'")
    runtime = _FRAMEWORKS.get(body.framework.lower())
    if runtime is None:
        raise UnmappableField("framework", f"framework '{body.framework}' is not served; use llama.cpp or tensorrt-llm")
    cfg, res = body.config, body.resource_requirements
    if cfg.model_path is None:
        raise UnmappableField("config.model_path", "config.model_path is required")
    spec: dict[str, Any] = {"runtime": runtime, "source": _source(cfg.model_path)}
    if body.display_name:
        spec["displayName"] = body.display_name
    if cfg.n_ctx is not None:
        # maxInputLen must stay below maxSeqLen: keep the default 2048 unless the context is smaller.
        spec["engine"] = {"maxSeqLen": cfg.n_ctx, "maxInputLen": min(2048, cfg.n_ctx - 1)}
    if cfg.n_gpu_layers and runtime == "llama-cpp":
        raise UnmappableField("config.n_gpu_layers", "runtime llama-cpp runs on CPU: n_gpu_layers must be 0 or absent")
    if cfg.n_gpu_layers and runtime == "tensorrt-llm" and cfg.n_gpu_layers != -1:
        raise UnmappableField("config.n_gpu_layers", "tensorrt-llm keeps every layer on the GPU: use -1 or omit it")
    if cfg.n_threads and runtime != "llama-cpp":
        raise UnmappableField("config.n_threads", "n_threads applies to llama.cpp only")
    if res is not None:
        if res.gpu_memory is not None:
            raise UnmappableField("resource_requirements.gpu_memory",
                                  "a Model requests whole GPUs (gpu_count), not GPU memory; omit gpu_memory")
        if res.gpu_count:
            if runtime == "llama-cpp":
                raise UnmappableField("resource_requirements.gpu_count", "runtime llama-cpp runs on CPU: gpu_count must be 0")
            spec["gpu"] = {"count": res.gpu_count}
            spec.setdefault("engine", {})["tensorParallel"] = res.gpu_count
        if res.cpu_cores is not None:
            spec["resources"] = {"requests": {"cpu": str(res.cpu_cores).removesuffix(".0")}}
    if runtime == "tensorrt-llm" and "gpu" not in spec:
        raise UnmappableField("resource_requirements.gpu_count", "tensorrt-llm needs gpu_count >= 1")
    try:
        ModelSpec.model_validate(spec)
    except ValueError as exc:  # the spec's own field rules (e.g. maxSeqLen bounds)
        raise UnmappableField("config", str(exc)) from exc
    if runtime == "llama-cpp" and not cfg.model_path.endswith(".gguf"):
        raise UnmappableField("config.model_path", "framework llama.cpp serves a .gguf file")
    kept = {"description": body.description, "tags": body.tags or None, "priority": body.priority,
            "n_threads": cfg.n_threads}
    kept = {k: v for k, v in kept.items() if v is not None}
    return spec, ({ANNOTATION: json.dumps(kept, sort_keys=True)} if kept else {})


# Replaced whole rather than merged: one of its members names the weights, and two would be two sources.
_WHOLE = {"source"}


def merge_spec(existing: dict[str, Any], mapped: dict[str, Any], *, top: bool = True) -> dict[str, Any]:
    """An update: the fields seed 003's body maps (`to_spec`) onto the Model's current spec, so what
    the body cannot express (gpu.product, nodeSelector, aliases, tolerations, engine limits, anything
    set with kubectl) stays as it is. Objects merge key by key; lists and scalars are replaced."""
    merged = dict(existing)
    for key, value in mapped.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and not (top and key in _WHOLE):
            merged[key] = merge_spec(merged[key], value, top=False)
        else:
            merged[key] = value
    return merged


def status_of(model: Model) -> str:
    if model.spec.replicas == 0 or model.status.phase is Phase.STOPPED:
        return "stopped"
    if model.status.phase is Phase.FAILED:
        return "error"
    if model.status.phase in (Phase.READY, Phase.DEGRADED):
        return "running"
    return "starting"


def _model_path(spec: ModelSpec) -> str | None:
    src = spec.source
    if src is None:
        return spec.external.url if spec.external else None
    if src.file:
        return src.file.path
    if src.pvc:
        return f"pvc://{src.pvc.claimName}/{src.pvc.path}"
    hf = src.huggingFace
    return f"hf://{hf.repoId}" + (f"/{hf.filename}" if hf.filename else "")


def to_item(model: Model, *, created_at: str | None = None, updated_at: str | None = None,
            resource_version: str | None = None) -> ModelItem:
    """A Model → seed 003's item."""
    spec, meta = model.spec, model.metadata
    kept = json.loads(meta.annotations.get(ANNOTATION, "{}"))
    config: dict[str, Any] = {"model_path": _model_path(spec), "n_ctx": spec.engine.maxSeqLen,
                              "replicas": spec.replicas}
    if "n_threads" in kept:
        config["n_threads"] = kept["n_threads"]
    status = status_of(model)
    ready = next((c.status for c in model.status.conditions if c.type == "Ready"), None)
    health = "healthy" if ready == "True" else "unhealthy" if status in ("running", "error") else "unknown"
    gpus = spec.gpu.count if spec.gpu else 0
    return ModelItem(
        id=meta.name, name=meta.name, display_name=spec.displayName or meta.name,
        description=kept.get("description"), framework=_SEED_FRAMEWORK[spec.runtime.value],
        status=status, health=health, created_at=created_at, updated_at=updated_at, config=config,
        resource_usage={"replicas": model.status.replicas, "ready_replicas": model.status.readyReplicas,
                        "gpu_count": gpus * model.status.replicas},
        tags=kept.get("tags", []), priority=kept.get("priority"), resource_version=resource_version)
