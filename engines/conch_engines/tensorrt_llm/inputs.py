"""Everything that shapes an engine, and the cache key derived from it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from conch_api import ModelSpec

from .pins import CACHE_MOUNT, TRTLLM_VERSION

# Bumped whenever build_commands changes what it produces for the same inputs, so old engines
# are not reused for a recipe they were not built with.
BUILD_RECIPE = 1
MAX_NUM_TOKENS_CAP = 8192


@dataclass(frozen=True)
class EngineInputs:
    """The inputs of one engine build. Replicas, names and display names are deliberately absent:
    they do not change the engine, so Models that differ only in them share it."""

    hf_repo: str | None  # a Hugging Face repository id …
    hf_revision: str | None
    pvc_claim: str | None  # … or a checkpoint directory inside a PersistentVolumeClaim
    pvc_path: str | None
    quantization: str  # int4_awq | int4_gptq | fp8 | none
    max_batch_size: int
    max_input_len: int
    max_seq_len: int
    max_num_tokens: int
    tensor_parallel: int
    gpu_product: str | None  # engines are tuned for one GPU model
    enable_kv_cache_reuse: bool  # decides --use_paged_context_fmha
    trtllm_version: str
    build_recipe: int = BUILD_RECIPE

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "EngineInputs":
        return cls(**json.loads(text))


def default_max_num_tokens(spec: ModelSpec) -> int:
    """maxBatchSize x maxInputLen capped at 8192 (the CRD's documented default)."""
    return min(spec.engine.maxBatchSize * spec.engine.maxInputLen, MAX_NUM_TOKENS_CAP)


def engine_inputs(spec: ModelSpec, trtllm_version: str = TRTLLM_VERSION) -> EngineInputs:
    source = spec.source
    if source is None or (source.huggingFace is None and source.pvc is None):
        raise ValueError("runtime tensorrt-llm builds from source.huggingFace or source.pvc")
    hf, pvc = source.huggingFace, source.pvc
    return EngineInputs(
        hf_repo=hf.repoId if hf else None,
        hf_revision=hf.revision if hf else None,
        pvc_claim=pvc.claimName if pvc else None,
        pvc_path=pvc.path if pvc else None,
        quantization=spec.quantization.value,
        max_batch_size=spec.engine.maxBatchSize,
        max_input_len=spec.engine.maxInputLen,
        max_seq_len=spec.engine.maxSeqLen,
        max_num_tokens=spec.trtllm.maxNumTokens or default_max_num_tokens(spec),
        tensor_parallel=spec.engine.tensorParallel,
        gpu_product=spec.gpu.product if spec.gpu else None,
        enable_kv_cache_reuse=spec.trtllm.enableKvCacheReuse,
        trtllm_version=trtllm_version,
    )


def cache_key(inputs: EngineInputs) -> str:
    """20 lowercase hex characters: stable across processes, usable in paths and DNS labels."""
    return hashlib.sha256(inputs.to_json().encode()).hexdigest()[:20]


def engine_root(key: str) -> str:
    return f"{CACHE_MOUNT}/engines/{key}"


def engine_dir(key: str) -> str:
    return f"{engine_root(key)}/engine"


def tokenizer_dir(key: str) -> str:
    return f"{engine_root(key)}/tokenizer"
