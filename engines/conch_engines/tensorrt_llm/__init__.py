"""Conch's TensorRT-LLM runtime, pinned to TensorRT-LLM 1.2.1 and its Triton image: engine
inputs and cache keys, build and serve command lines, and complete Triton repositories. Pure
logic — importable without tensorrt_llm, Kubernetes or a GPU."""

from .commands import build_commands, builder_command, serve_command
from .inputs import EngineInputs, cache_key, engine_dir, engine_inputs, tokenizer_dir
from .pins import (
    ALL_MODELS_DIR,
    CACHE_MOUNT,
    ENSEMBLE_TRITON_MODEL,
    LLMAPI_TRITON_MODEL,
    TRITON_TRTLLM_IMAGE,
    TRTLLM_VERSION,
)
from .repository import ensemble_repository, llmapi_repository

__all__ = [
    "ALL_MODELS_DIR", "CACHE_MOUNT", "ENSEMBLE_TRITON_MODEL", "LLMAPI_TRITON_MODEL", "TRITON_TRTLLM_IMAGE",
    "TRTLLM_VERSION", "EngineInputs", "build_commands", "builder_command", "cache_key", "engine_dir",
    "engine_inputs", "ensemble_repository", "llmapi_repository", "serve_command", "tokenizer_dir",
]
