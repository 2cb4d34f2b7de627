"""The llama-cpp runtime's llmapi config is TensorRT-LLM 1.2.1's llmapi model config, tensor for
tensor (`triton_backend/all_models/llmapi/tensorrt_llm/config.pbtxt` at c8c6df08, copied here
by hand so this test does not just restate `contract.py`)."""

from __future__ import annotations

from conch_engines import repository

# name, data type, dims, optional — in the order 1.2.1 declares them
TRTLLM_1_2_1_INPUTS = [
    ("text_input", "TYPE_STRING", [-1], False), ("streaming", "TYPE_BOOL", [1], True),
    ("sampling_param_best_of", "TYPE_INT32", [1], True), ("sampling_param_temperature", "TYPE_FP32", [1], True),
    ("sampling_param_top_k", "TYPE_INT32", [1], True), ("sampling_param_top_p", "TYPE_FP32", [1], True),
    ("sampling_param_frequency_penalty", "TYPE_FP32", [1], True),
    ("sampling_param_presence_penalty", "TYPE_FP32", [1], True),
    ("sampling_param_max_tokens", "TYPE_INT32", [1], True), ("sampling_param_stop", "TYPE_STRING", [-1], True),
    ("sampling_param_seed", "TYPE_UINT64", [1], True),
    ("sampling_param_exclude_input_from_output", "TYPE_BOOL", [1], True),
    ("sampling_param_return_perf_metrics", "TYPE_BOOL", [1], True), ("return_finish_reason", "TYPE_BOOL", [1], True),
    ("return_stop_reason", "TYPE_BOOL", [1], True), ("return_cumulative_logprob", "TYPE_BOOL", [1], True),
    ("stop", "TYPE_BOOL", [1], True),
]
TRTLLM_1_2_1_OUTPUTS = [
    ("text_output", "TYPE_STRING", [-1]), ("finish_reason", "TYPE_STRING", [-1]), ("stop_reason", "TYPE_STRING", [-1]),
    ("cumulative_logprob", "TYPE_FP32", [-1]), ("kv_cache_reused_block", "TYPE_INT32", [-1]),
    ("kv_cache_missed_block", "TYPE_INT32", [-1]), ("kv_cache_alloc_new_blocks", "TYPE_INT32", [-1]),
    ("kv_cache_alloc_total_blocks", "TYPE_INT32", [-1]), ("kv_cache_hit_rate", "TYPE_FP32", [-1]),
    ("arrival_time_ns", "TYPE_INT64", [1]), ("first_scheduled_time_ns", "TYPE_INT64", [1]),
    ("first_token_time_ns", "TYPE_INT64", [1]), ("last_token_time_ns", "TYPE_INT64", [1]),
    ("acceptance_rate", "TYPE_FP32", [1]), ("total_accepted_draft_tokens", "TYPE_INT32", [1]),
    ("total_draft_tokens", "TYPE_INT32", [1]),
]


def test_llmapi_config_is_tensorrt_llm_1_2_1s():
    files = repository.llama_cpp_files("m", "/models/x.gguf", n_ctx=2048, interface="llmapi")
    config = repository.parse_config(files["m/config.pbtxt"])
    dtype = repository.mc.DataType.Name
    assert [(t.name, dtype(t.data_type), list(t.dims), t.optional) for t in config.input] == TRTLLM_1_2_1_INPUTS
    assert [(t.name, dtype(t.data_type), list(t.dims)) for t in config.output] == TRTLLM_1_2_1_OUTPUTS
    assert config.max_batch_size == 0  # 1.2.1's model.yaml: triton_config.max_batch_size 0
    assert config.model_transaction_policy.decoupled  # Conch streams; 1.2.1's sample model.yaml says False
    assert config.parameters["interface"].string_value == "llmapi"


def test_the_default_interface_is_still_the_ensemble():
    config = repository.parse_config(repository.llama_cpp_files("m", "/x.gguf")["m/config.pbtxt"])
    assert config.max_batch_size == 1 and "max_tokens" in {t.name for t in config.input}
