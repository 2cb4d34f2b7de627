"""Complete Triton configs for the two TensorRT-LLM serving paths, filled from NVIDIA's templates.

Templates (templates/*.pbtxt, copied unmodified) use `${name}` variables, as NVIDIA's
tools/fill_template.py does. Every variable Conch sets is substituted; every optional
`parameters` block Conch leaves unset is removed whole, so no `${…}` survives — a leftover
raises instead of shipping a config whose meaning depends on the backend's "unset" detection.
"""

from __future__ import annotations

import functools
import re
from importlib.resources import files
from string import Template

import yaml
from conch_api import ModelSpec

from .inputs import default_max_num_tokens, engine_dir, tokenizer_dir
from .pins import LLMAPI_TRITON_MODEL

INFLIGHT_BATCHER_MODELS = ("ensemble", "preprocessing", "tensorrt_llm", "postprocessing", "tensorrt_llm_bls")
# Python pre/post-processing instances: NVIDIA's model_config.md tip ("5 works well").
TOKENIZER_INSTANCES = 5
# 0 = no limit on Triton's queue; the in-flight batcher takes requests off it at once and queues
# them itself, so a Triton-side limit would not bound the real backlog (as in NVIDIA's examples).
MAX_QUEUE_SIZE = 0
MAX_QUEUE_DELAY_MICROSECONDS = 0

_UNSET_PARAMETER = re.compile(
    r'parameters:?\s*\{\s*key:\s*"[^"]*"\s*value:\s*\{\s*string_value:\s*"\$\{[^}]*\}"\s*\}\s*\}\n?')

_COMMENTED_VARIABLE = re.compile(r"^[ \t]*#.*\$\{.*\n", re.MULTILINE)


@functools.lru_cache(maxsize=None)  # read once: the templates are files of the installed package
def _template(name: str) -> str:
    return (files(__package__) / "templates" / f"{name}.pbtxt").read_text()


def fill(template: str, values: dict[str, object]) -> str:
    """Substitute values, drop the parameter blocks still unset, refuse anything else unset."""
    text = Template(template).safe_substitute({key: _text(value) for key, value in values.items()})
    text = _UNSET_PARAMETER.sub("", text)
    text = _COMMENTED_VARIABLE.sub("", text)  # e.g. the commented-out, deprecated enable_trt_overlap block
    leftovers = sorted(set(re.findall(r"\$\{([^}]*)\}", text)))
    if leftovers:
        raise ValueError(f"template variables left unset: {', '.join(leftovers)}")
    return text


def _text(value: object) -> str:
    # The C++ backend and the Python models parse booleans case-insensitively; Triton's
    # `decoupled:` field is protobuf text and needs lowercase.
    return str(value).lower() if isinstance(value, bool) else str(value)


def ensemble_values(spec: ModelSpec, key: str) -> dict[str, dict[str, object]]:
    """The values each inflight_batcher_llm model gets (what fill_template.py would be given)."""
    batch = spec.engine.maxBatchSize
    trtllm = spec.trtllm
    shared = {"triton_max_batch_size": batch, "logits_datatype": "TYPE_FP32"}
    return {
        "ensemble": shared,
        "preprocessing": {
            **shared, "tokenizer_dir": tokenizer_dir(key), "preprocessing_instance_count": TOKENIZER_INSTANCES,
            "max_queue_delay_microseconds": MAX_QUEUE_DELAY_MICROSECONDS, "max_queue_size": MAX_QUEUE_SIZE,
            # The gateway renders the chat template, BOS included: the tokenizer must not add another.
            "add_special_tokens": False,
        },
        "tensorrt_llm": {
            **shared, "triton_backend": "tensorrtllm", "decoupled_mode": True, "engine_dir": engine_dir(key),
            "batching_strategy": "inflight_fused_batching", "max_beam_width": 1,
            "max_queue_delay_microseconds": MAX_QUEUE_DELAY_MICROSECONDS, "max_queue_size": MAX_QUEUE_SIZE,
            "encoder_input_features_data_type": "TYPE_FP16", "prompt_embedding_table_data_type": "TYPE_FP16",
            "kv_cache_free_gpu_mem_fraction": trtllm.kvCacheFreeGpuMemFraction,
            "enable_kv_cache_reuse": trtllm.enableKvCacheReuse,
            # Prompts longer than max_num_tokens are prefilled in chunks; needs paged context FMHA,
            # which the engine has exactly when KV reuse is on (commands.trtllm_build_command).
            "enable_chunked_context": trtllm.enableKvCacheReuse,
            "exclude_input_in_output": True,
        },
        "postprocessing": {
            **shared, "tokenizer_dir": tokenizer_dir(key), "postprocessing_instance_count": TOKENIZER_INSTANCES,
            "skip_special_tokens": True,
        },
        "tensorrt_llm_bls": {
            **shared, "decoupled_mode": True, "prompt_embedding_table_data_type": "TYPE_FP16",
            # model_config.md: one BLS instance per sequence the engine can batch.
            "bls_instance_count": batch, "accumulate_tokens": False, "tensorrt_llm_model_name": "tensorrt_llm",
        },
    }


def ensemble_repository(spec: ModelSpec, key: str) -> dict[str, str]:
    """Relative path -> content of every config.pbtxt of the inflight_batcher_llm repository."""
    values = ensemble_values(spec, key)
    return {f"{name}/config.pbtxt": fill(_template(name), values[name]) for name in INFLIGHT_BATCHER_MODELS}


# The llmapi template leaves max_batch_size and decoupled to model.py's auto_complete_config,
# which reads them from model.yaml's triton_config. Conch serves with
# --disable-auto-complete-config (as launch_triton_server.py does), which skips that hook, so the
# same two values are written here too; they equal model.yaml's, so both routes agree.
_LLMAPI_TRITON_SETTINGS = '''
# Set by Conch: the same values as model.yaml's triton_config (see repository.py).
max_batch_size: 0
model_transaction_policy {
  decoupled: true
}
'''


def llmapi_model_yaml(spec: ModelSpec, model_path: str) -> dict[str, object]:
    """model.yaml: LLM() arguments plus the triton_config the llmapi model.py reads."""
    trtllm = spec.trtllm
    return {
        "model": model_path,
        "backend": "pytorch",
        "tensor_parallel_size": spec.engine.tensorParallel,
        "max_batch_size": spec.engine.maxBatchSize,
        "max_num_tokens": trtllm.maxNumTokens or default_max_num_tokens(spec),
        "max_seq_len": spec.engine.maxSeqLen,
        "kv_cache_config": {
            "free_gpu_memory_fraction": trtllm.kvCacheFreeGpuMemFraction,
            "enable_block_reuse": trtllm.enableKvCacheReuse,
        },
        # "The current implementation does not support batching" (llmapi model.yaml): batching
        # happens inside TensorRT-LLM; decoupled so that `streaming` works.
        "triton_config": {"max_batch_size": 0, "decoupled": True},
    }


def llmapi_repository(spec: ModelSpec, model_path: str) -> dict[str, str]:
    """Relative path -> content for Triton's llmapi repository (backend pytorch)."""
    config = _template("llmapi").replace('backend: "python"\n', 'backend: "python"\n' + _LLMAPI_TRITON_SETTINGS, 1)
    return {
        f"{LLMAPI_TRITON_MODEL}/config.pbtxt": fill(config, {}),
        f"{LLMAPI_TRITON_MODEL}/1/model.yaml": yaml.safe_dump(llmapi_model_yaml(spec, model_path), sort_keys=False),
    }
