"""What Conch's TensorRT-LLM runtime is pinned to, and where things live in its containers."""

from __future__ import annotations

TRTLLM_VERSION = "1.2.1"
# Triton 26.04-26.07 ship TensorRT-LLM 1.2.1 (server docs/introduction/compatibility.md); engines
# must be built by the same TensorRT-LLM that serves them, so builder and server use this image.
TRITON_TRTLLM_IMAGE = "nvcr.io/nvidia/tritonserver:26.07-trtllm-python-py3"
CACHE_MOUNT = "/cache"  # engine-cache PVC mount point (build Job and serving pods)
ALL_MODELS_DIR = "/app/all_models"  # the image's model-repository templates and their model.py files
EXAMPLES_DIR = "/opt/trtllm-examples"  # examples/ of TensorRT-LLM v1.2.1, added by docker/trtllm-builder.Dockerfile
ENSEMBLE_TRITON_MODEL = "ensemble"  # what the gateway calls, backend engine
LLMAPI_TRITON_MODEL = "tensorrt_llm"  # what the gateway calls, backend pytorch
