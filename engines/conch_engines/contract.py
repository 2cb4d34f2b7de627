"""The tensor contracts of Conch's CPU runtimes.

Text generation speaks either of TensorRT-LLM's two interfaces:
- `ensemble`: names and types follow TensorRT-LLM's `inflight_batcher_llm/ensemble/config.pbtxt`
  (current names: `seed`, `min_tokens`). Only what this runtime can honour is declared; Triton
  rejects any other input tensor by name, which is the clear error a client should get.
- `llmapi`: the PyTorch path's Python model, declared exactly as TensorRT-LLM 1.2.1 declares it
  (`triton_backend/all_models/llmapi/tensorrt_llm/config.pbtxt` at c8c6df08, before LoRA and
  image inputs were added), so a client that works here works against the real one. Its model
  runs with `max_batch_size: 0` (from its `model.yaml`): dims are the whole shape.

Sentence embedding has a contract of its own (TensorRT-LLM has none): texts in, one vector and
one token count per text out.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str  # Triton's DataType enum name, e.g. "TYPE_INT32"
    dims: tuple[int, ...] = (1,)
    optional: bool = True


ENSEMBLE_INPUTS: tuple[TensorSpec, ...] = (
    TensorSpec("text_input", "TYPE_STRING", optional=False),
    TensorSpec("max_tokens", "TYPE_INT32", optional=False),
    TensorSpec("bad_words", "TYPE_STRING", (-1,)),
    TensorSpec("stop_words", "TYPE_STRING", (-1,)),
    TensorSpec("end_id", "TYPE_INT32"),
    TensorSpec("pad_id", "TYPE_INT32"),
    TensorSpec("top_k", "TYPE_INT32"),
    TensorSpec("top_p", "TYPE_FP32"),
    TensorSpec("temperature", "TYPE_FP32"),
    TensorSpec("repetition_penalty", "TYPE_FP32"),
    TensorSpec("min_tokens", "TYPE_INT32"),
    TensorSpec("presence_penalty", "TYPE_FP32"),
    TensorSpec("frequency_penalty", "TYPE_FP32"),
    TensorSpec("seed", "TYPE_UINT64"),
    TensorSpec("beam_width", "TYPE_INT32"),
    TensorSpec("num_return_sequences", "TYPE_INT32"),
    TensorSpec("exclude_input_in_output", "TYPE_BOOL"),
    TensorSpec("return_num_input_tokens", "TYPE_BOOL"),
    TensorSpec("return_num_output_tokens", "TYPE_BOOL"),
    TensorSpec("stream", "TYPE_BOOL"),
)

ENSEMBLE_OUTPUTS: tuple[TensorSpec, ...] = (
    TensorSpec("text_output", "TYPE_STRING", (-1,)),
    TensorSpec("num_input_tokens", "TYPE_INT32"),
    TensorSpec("num_output_tokens", "TYPE_INT32"),
)

LLMAPI_INPUTS: tuple[TensorSpec, ...] = (
    TensorSpec("text_input", "TYPE_STRING", (-1,), optional=False),
    TensorSpec("streaming", "TYPE_BOOL"),
    TensorSpec("sampling_param_best_of", "TYPE_INT32"),
    TensorSpec("sampling_param_temperature", "TYPE_FP32"),
    TensorSpec("sampling_param_top_k", "TYPE_INT32"),
    TensorSpec("sampling_param_top_p", "TYPE_FP32"),
    TensorSpec("sampling_param_frequency_penalty", "TYPE_FP32"),
    TensorSpec("sampling_param_presence_penalty", "TYPE_FP32"),
    TensorSpec("sampling_param_max_tokens", "TYPE_INT32"),
    TensorSpec("sampling_param_stop", "TYPE_STRING", (-1,)),
    TensorSpec("sampling_param_seed", "TYPE_UINT64"),
    TensorSpec("sampling_param_exclude_input_from_output", "TYPE_BOOL"),
    TensorSpec("sampling_param_return_perf_metrics", "TYPE_BOOL"),
    TensorSpec("return_finish_reason", "TYPE_BOOL"),
    TensorSpec("return_stop_reason", "TYPE_BOOL"),
    TensorSpec("return_cumulative_logprob", "TYPE_BOOL"),
    TensorSpec("stop", "TYPE_BOOL"),  # cancels every request carrying this request's id
)

LLMAPI_OUTPUTS: tuple[TensorSpec, ...] = (
    TensorSpec("text_output", "TYPE_STRING", (-1,)),  # cumulative: all text so far, in every response
    TensorSpec("finish_reason", "TYPE_STRING", (-1,)),  # "stop" | "length" | "cancelled"; "None" until done
    TensorSpec("stop_reason", "TYPE_STRING", (-1,)),  # the stop string that ended it, else "None"
    TensorSpec("cumulative_logprob", "TYPE_FP32", (-1,)),
    TensorSpec("kv_cache_reused_block", "TYPE_INT32", (-1,)),
    TensorSpec("kv_cache_missed_block", "TYPE_INT32", (-1,)),
    TensorSpec("kv_cache_alloc_new_blocks", "TYPE_INT32", (-1,)),
    TensorSpec("kv_cache_alloc_total_blocks", "TYPE_INT32", (-1,)),
    TensorSpec("kv_cache_hit_rate", "TYPE_FP32", (-1,)),
    TensorSpec("arrival_time_ns", "TYPE_INT64"),
    TensorSpec("first_scheduled_time_ns", "TYPE_INT64"),
    TensorSpec("first_token_time_ns", "TYPE_INT64"),
    TensorSpec("last_token_time_ns", "TYPE_INT64"),
    TensorSpec("acceptance_rate", "TYPE_FP32"),
    TensorSpec("total_accepted_draft_tokens", "TYPE_INT32"),
    TensorSpec("total_draft_tokens", "TYPE_INT32"),
)

# max_batch_size 0: dims are the whole tensor shape, so one request carries any number of texts.
EMBEDDING_INPUTS: tuple[TensorSpec, ...] = (
    TensorSpec("text_input", "TYPE_STRING", (-1,), optional=False),  # the texts, one per element
)

EMBEDDING_OUTPUTS: tuple[TensorSpec, ...] = (
    TensorSpec("embedding", "TYPE_FP32", (-1, -1)),  # (texts, dimensions), unit L2 norm
    TensorSpec("num_input_tokens", "TYPE_INT32", (-1,)),  # tokens each text was embedded from
)
