"""Shared API types of Conch: the `Model` custom resource."""

from .model import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    Condition,
    EngineStatus,
    Model,
    ModelSpec,
    ModelStatus,
    Phase,
    PromptFamily,
    Quantization,
    Runtime,
    TensorInterface,
    TensorRTLLMBackend,
    TensorRTLLMSpec,
)

__all__ = [
    "API_VERSION", "GROUP", "KIND", "PLURAL", "VERSION", "Condition", "EngineStatus", "Model", "ModelSpec",
    "ModelStatus", "Phase", "PromptFamily", "Quantization", "Runtime", "TensorInterface", "TensorRTLLMBackend", "TensorRTLLMSpec",
]
