"""The generated TensorRT-LLM model repositories are complete, Triton-parseable configs that
speak the tensors the gateway sends, and model.yaml only uses LLM() arguments of 1.2.1."""

from __future__ import annotations


import pytest
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from conch_engines.contract import ENSEMBLE_INPUTS, ENSEMBLE_OUTPUTS
from conch_engines.tensorrt_llm import (
    cache_key,
    engine_dir,
    engine_inputs,
    ensemble_repository,
    llmapi_repository,
    tokenizer_dir,
)
from conch_engines.tensorrt_llm.repository import fill
from support.trtllm import REFERENCE, spec


SPECS = [spec(), spec(quantization="fp8", tensorrtLLM={"enableKvCacheReuse": False, "kvCacheFreeGpuMemFraction": 0.5}),
         spec(engine={"maxBatchSize": 32, "tensorParallel": 2})]
# What the gateway sends to the ensemble, beyond the contract of the CPU runtimes.
GATEWAY_INPUTS = {"text_input": mc.TYPE_STRING, "max_tokens": mc.TYPE_INT32, "stream": mc.TYPE_BOOL,
                  "temperature": mc.TYPE_FP32, "top_p": mc.TYPE_FP32, "top_k": mc.TYPE_INT32, "seed": mc.TYPE_UINT64,
                  "presence_penalty": mc.TYPE_FP32, "frequency_penalty": mc.TYPE_FP32,
                  "repetition_penalty": mc.TYPE_FP32, "stop_words": mc.TYPE_STRING,
                  "exclude_input_in_output": mc.TYPE_BOOL, "return_num_input_tokens": mc.TYPE_BOOL,
                  "return_num_output_tokens": mc.TYPE_BOOL}


def parse(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def ensemble_configs(model_spec) -> dict[str, mc.ModelConfig]:
    key = cache_key(engine_inputs(model_spec))
    files = ensemble_repository(model_spec, key)
    assert set(files) == {f"{m}/config.pbtxt" for m in
                          ("ensemble", "preprocessing", "tensorrt_llm", "postprocessing", "tensorrt_llm_bls")}
    for text in files.values():
        assert "${" not in text
    return {path.split("/")[0]: parse(text) for path, text in files.items()}


@pytest.mark.parametrize("model_spec", SPECS)
def test_every_ensemble_config_parses_and_is_filled(model_spec):
    configs = ensemble_configs(model_spec)
    key = cache_key(engine_inputs(model_spec))
    for name, config in configs.items():
        assert config.name == name
        assert config.max_batch_size == model_spec.engine.maxBatchSize
    core = configs["tensorrt_llm"]
    params = {k: v.string_value for k, v in core.parameters.items()}
    assert core.backend == "tensorrtllm" and core.model_transaction_policy.decoupled
    assert params["gpt_model_path"] == engine_dir(key)
    assert params["gpt_model_type"] == "inflight_fused_batching"
    assert params["kv_cache_free_gpu_mem_fraction"] == str(model_spec.trtllm.kvCacheFreeGpuMemFraction)
    assert params["enable_kv_cache_reuse"] == str(model_spec.trtllm.enableKvCacheReuse).lower()
    assert params["max_beam_width"] == "1" and params["exclude_input_in_output"] == "true"
    # optional parameters Conch does not set are gone, not left as ${...}
    assert "lora_prefetch_dir" not in params and "encoder_model_path" not in params
    assert core.dynamic_batching.default_queue_policy.max_queue_size == 0
    for name in ("preprocessing", "postprocessing"):
        assert configs[name].parameters["tokenizer_dir"].string_value == tokenizer_dir(key)
        assert configs[name].instance_group[0].count == 5
    assert configs["preprocessing"].parameters["add_special_tokens"].string_value == "false"
    assert "gpt_model_path" not in configs["preprocessing"].parameters
    bls = configs["tensorrt_llm_bls"]
    assert bls.model_transaction_policy.decoupled and bls.instance_group[0].count == model_spec.engine.maxBatchSize
    assert bls.parameters["tensorrt_llm_model_name"].string_value == "tensorrt_llm"
    assert "tensorrt_llm_draft_model_name" not in bls.parameters
    out_types = {t.name: t.data_type for t in configs["ensemble"].output}
    assert out_types["context_logits"] == mc.TYPE_FP32


@pytest.mark.parametrize("entry", ["ensemble", "tensorrt_llm_bls"])
def test_gateway_inputs_exist_with_their_types(entry):
    config = ensemble_configs(spec())[entry]
    inputs = {t.name: t for t in config.input}
    for name, data_type in GATEWAY_INPUTS.items():
        assert inputs[name].data_type == data_type, name
    for tensor in ENSEMBLE_INPUTS:  # the CPU runtimes' contract: same names, types and optionality
        assert mc.DataType.Name(inputs[tensor.name].data_type) == tensor.data_type
        assert inputs[tensor.name].optional == tensor.optional
    outputs = {t.name: t for t in config.output}
    for tensor in ENSEMBLE_OUTPUTS:
        assert mc.DataType.Name(outputs[tensor.name].data_type) == tensor.data_type


def test_ensemble_steps_only_name_tensors_that_exist():
    configs = ensemble_configs(spec())
    ensemble = configs["ensemble"]
    produced = {t.name for t in ensemble.input}
    for step in ensemble.ensemble_scheduling.step:  # steps are in dependency order in the template
        model = configs[step.model_name]
        model_inputs = {t.name for t in model.input}
        model_outputs = {t.name for t in model.output}
        for model_tensor, ensemble_tensor in step.input_map.items():
            assert model_tensor in model_inputs, f"{step.model_name} has no input {model_tensor}"
            assert ensemble_tensor in produced, f"{ensemble_tensor} is not produced before {step.model_name}"
        required = {t.name for t in model.input if not t.optional}
        assert required <= set(step.input_map), f"{step.model_name} misses required inputs"
        for model_tensor, ensemble_tensor in step.output_map.items():
            assert model_tensor in model_outputs, f"{step.model_name} has no output {model_tensor}"
            produced.add(ensemble_tensor)
    assert {t.name for t in ensemble.output} <= produced


def test_llmapi_config_parses_and_is_decoupled_without_batching():
    files = llmapi_repository(spec(tensorrtLLM={"backend": "pytorch"}), "/models/qwen")
    assert set(files) == {"tensorrt_llm/config.pbtxt", "tensorrt_llm/1/model.yaml"}
    assert "${" not in files["tensorrt_llm/config.pbtxt"]
    config = parse(files["tensorrt_llm/config.pbtxt"])
    assert config.backend == "python" and config.max_batch_size == 0
    assert config.model_transaction_policy.decoupled
    inputs = {t.name for t in config.input}
    assert {"text_input", "streaming", "sampling_param_max_tokens", "sampling_param_seed", "stop"} <= inputs


@pytest.mark.parametrize("model_spec", [spec(tensorrtLLM={"backend": "pytorch"}),
                                        spec(quantization="fp8", engine={"tensorParallel": 4},
                                             tensorrtLLM={"backend": "pytorch", "maxNumTokens": 4096})])
def test_model_yaml_uses_only_documented_llm_arguments(model_spec):
    model_yaml = yaml.safe_load(llmapi_repository(model_spec, "/models/m")["tensorrt_llm/1/model.yaml"])
    extra = REFERENCE["llmapi_model_yaml_extra_keys"]
    assert set(model_yaml) - set(extra["keys"]) <= set(REFERENCE["llm_args"]["fields"])
    assert set(model_yaml["kv_cache_config"]) <= set(REFERENCE["llm_args"]["kv_cache_config"])
    assert set(model_yaml["triton_config"]) <= set(extra["triton_config"])
    assert model_yaml["triton_config"] == {"max_batch_size": 0, "decoupled": True}
    assert model_yaml["backend"] == "pytorch" and model_yaml["model"] == "/models/m"
    assert model_yaml["tensor_parallel_size"] == model_spec.engine.tensorParallel
    assert model_yaml["max_seq_len"] == model_spec.engine.maxSeqLen
    assert model_yaml["kv_cache_config"]["free_gpu_memory_fraction"] == model_spec.trtllm.kvCacheFreeGpuMemFraction


def test_fill_refuses_unset_variables_outside_parameters():
    with pytest.raises(ValueError, match="triton_max_batch_size"):
        fill('name: "x"\nmax_batch_size: ${triton_max_batch_size}\n', {})
