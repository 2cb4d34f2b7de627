"""Model → the objects that serve it, and where the gateway finds it: the one dispatcher over the
runtimes' manifests (manifests/). Pure."""

from __future__ import annotations

from typing import Any

from conch_api import Model, Runtime, TensorInterface

from .manifests import kit, llama_cpp, tensorrt_llm
from .settings import OperatorSettings

# Runtimes whose Triton the operator runs; an `external` Model's Triton runs elsewhere.
_MANAGED = {Runtime.LLAMA_CPP: llama_cpp, Runtime.TENSORRT_LLM: tensorrt_llm}


def desired_objects(model: Model, settings: OperatorSettings) -> list[dict[str, Any]]:
    """Everything the Model owns (external Models own nothing). For tensorrt-llm these are the
    serving objects only: the reconciler applies them once the engine is ready."""
    runtime = _MANAGED.get(model.spec.runtime)
    return runtime.serving_objects(model, settings) if runtime else []


def endpoint(model: Model) -> str:
    """Where the gateway reaches the model's Triton over HTTP."""
    if model.spec.runtime == Runtime.EXTERNAL:
        return model.spec.external.url.rstrip("/")
    return kit.endpoint(model)


def grpc_address(model: Model) -> str | None:
    if model.spec.runtime == Runtime.EXTERNAL:
        return model.spec.external.grpcAddress
    return kit.grpc_address(model)


def triton_model(model: Model) -> str:
    if model.spec.runtime == Runtime.EXTERNAL:
        return model.spec.external.tritonModel
    return _MANAGED[model.spec.runtime].triton_model(model)


def interface(model: Model) -> TensorInterface:
    if model.spec.runtime == Runtime.EXTERNAL:
        return model.spec.external.interface
    return _MANAGED[model.spec.runtime].interface(model)
