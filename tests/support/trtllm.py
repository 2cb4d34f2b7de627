"""Shared by the TensorRT-LLM unit tests: a Model spec with overrides, and the reference lists of
the pinned release."""

from __future__ import annotations

import json
from pathlib import Path

from conch_api import ModelSpec

import conch_engines.tensorrt_llm as trtllm

REFERENCE = json.loads((Path(trtllm.__file__).parent / "reference" / "trtllm-1.2.1.json").read_text())


def spec(**overrides) -> ModelSpec:
    base = {"runtime": "tensorrt-llm", "source": {"huggingFace": {"repoId": "Qwen/Qwen2.5-7B-Instruct"}},
            "quantization": "int4_awq", "gpu": {"count": 1, "product": "NVIDIA-L4"}}
    engine = overrides.pop("engine", None)
    base.update(overrides)
    if engine:
        base["engine"] = {"maxBatchSize": 8, "maxInputLen": 2048, "maxSeqLen": 4096, "tensorParallel": 1, **engine}
        base["gpu"] = {**base["gpu"], "count": base["engine"]["tensorParallel"]}
    return ModelSpec.model_validate(base)
