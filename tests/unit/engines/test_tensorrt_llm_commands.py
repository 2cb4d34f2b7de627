"""Engine build and serve command lines: only flags TensorRT-LLM 1.2.1's scripts declare (the
checked-in reference), values they accept, a cache key that follows exactly what shapes an
engine, and Triton launched the way 1.2.1's launch_triton_server.py launches it."""

from __future__ import annotations

import itertools

import pytest

import conch_engines.tensorrt_llm as trtllm
from conch_engines.tensorrt_llm import build_commands, builder_command, cache_key, engine_inputs, serve_command
from conch_engines.tensorrt_llm.commands import UnsupportedArchitecture
from support.trtllm import REFERENCE, spec


def reference_for(command: list[str]) -> dict:
    if command[0] == "trtllm-build":
        return REFERENCE["trtllm_build"]
    script = command[1]
    if script.endswith("quantization/quantize.py"):
        return REFERENCE["quantize_py"]
    example = script.split("/models/core/")[1].split("/")[0]
    return REFERENCE["convert_checkpoint"][example]


def flag_values(command: list[str]) -> dict[str, str | None]:
    args = command[1:] if command[0] == "trtllm-build" else command[2:]
    parsed: dict[str, str | None] = {}
    for arg in args:
        if arg.startswith("--"):
            parsed[arg] = None
            last = arg
        else:
            assert parsed[last] is None, f"{last} given two values"
            parsed[last] = arg
    return parsed


COMBINATIONS = list(itertools.product(
    ("int4_awq", "int4_gptq", "fp8", "none"), ("LlamaForCausalLM", "Qwen2ForCausalLM"), (1, 2, 4), (True, False)))


@pytest.mark.parametrize(("quantization", "architecture", "tp", "kv_reuse"), COMBINATIONS)
def test_build_commands_use_only_documented_flags_and_values(quantization, architecture, tp, kv_reuse):
    inputs = engine_inputs(spec(quantization=quantization, engine={"tensorParallel": tp},
                                tensorrtLLM={"enableKvCacheReuse": kv_reuse}))
    commands = build_commands(inputs, checkpoint_dir="/ckpt", work_dir="/scratch/work", engine_out="/scratch/engine",
                              architecture=architecture)
    assert [c[0] for c in commands] == ["python3", "trtllm-build"]
    for command in commands:
        reference = reference_for(command)
        values = flag_values(command)
        assert set(values) <= set(reference["flags"]), set(values) - set(reference["flags"])
        for flag, value in values.items():
            if flag in reference["choices"]:
                assert value in reference["choices"][flag], (flag, value)
    checkpoint, build = (flag_values(c) for c in commands)
    assert checkpoint["--tp_size"] == str(tp) and build["--workers"] == str(tp)
    assert checkpoint["--output_dir"] == build["--checkpoint_dir"] == "/scratch/work/trtllm-checkpoint"
    assert build["--output_dir"] == "/scratch/engine" and build["--kv_cache_type"] == "paged"
    assert build["--multiple_profiles"] == "enable" and build["--gemm_plugin"] == "auto"
    assert (build.get("--use_paged_context_fmha") == "enable") is kv_reuse
    assert build["--max_num_tokens"] == str(inputs.max_num_tokens)
    assert "--opt_num_tokens" not in build  # trtllm-build refuses it together with multiple_profiles


def test_each_quantization_takes_its_documented_route():
    def first(quantization, architecture="LlamaForCausalLM"):
        inputs = engine_inputs(spec(quantization=quantization))
        return build_commands(inputs, checkpoint_dir="/c", work_dir="/w", engine_out="/e", architecture=architecture)[0]

    awq = first("int4_awq")
    assert awq[1].endswith("/quantization/quantize.py")
    assert flag_values(awq)["--qformat"] == "int4_awq" and flag_values(awq)["--awq_block_size"] == "128"
    assert flag_values(first("fp8"))["--qformat"] == "fp8"
    gptq = first("int4_gptq", "Qwen2ForCausalLM")
    assert gptq[1].endswith("/models/core/qwen/convert_checkpoint.py")
    assert flag_values(gptq)["--weight_only_precision"] == "int4_gptq" and "--per_group" in gptq
    none = first("none")
    assert none[1].endswith("/models/core/llama/convert_checkpoint.py") and "--use_weight_only" not in none
    assert flag_values(none)["--dtype"] == "float16"


def test_unsupported_architecture_is_a_clear_error():
    with pytest.raises(UnsupportedArchitecture, match="MistralForCausalLM.*LlamaForCausalLM, Qwen2ForCausalLM"):
        build_commands(engine_inputs(spec()), checkpoint_dir="/c", work_dir="/w", engine_out="/e",
                       architecture="MistralForCausalLM")


def test_cache_key_follows_what_shapes_the_engine():
    key = cache_key(engine_inputs(spec()))
    assert len(key) >= 16 and key.isalnum() and key == key.lower()
    assert key == cache_key(engine_inputs(spec()))
    # not the replicas, display name, backend-independent serving knobs
    assert key == cache_key(engine_inputs(spec(replicas=5, displayName="Qwen")))
    assert key == cache_key(engine_inputs(spec(tensorrtLLM={"kvCacheFreeGpuMemFraction": 0.5,
                                                            "buildTimeoutSeconds": 600})))
    different = [
        spec(source={"huggingFace": {"repoId": "Qwen/Qwen2.5-7B-Instruct", "revision": "abc123"}}),
        spec(source={"huggingFace": {"repoId": "meta-llama/Llama-3.1-8B-Instruct"}}),
        spec(source={"pvc": {"claimName": "weights", "path": "/qwen"}}),
        spec(quantization="fp8"),
        spec(engine={"maxBatchSize": 16}), spec(engine={"maxInputLen": 1024}), spec(engine={"maxSeqLen": 8192}),
        spec(engine={"tensorParallel": 2}),
        spec(gpu={"count": 1, "product": "NVIDIA-H100-80GB-HBM3"}),
        spec(tensorrtLLM={"enableKvCacheReuse": False}), spec(tensorrtLLM={"maxNumTokens": 4096}),
    ]
    keys = [cache_key(engine_inputs(s)) for s in different]
    assert key not in keys and len(set(keys)) == len(keys)
    assert key != cache_key(engine_inputs(spec(), trtllm_version="1.2.0"))


def test_max_num_tokens_defaults_to_batch_times_input_capped():
    assert engine_inputs(spec(engine={"maxBatchSize": 2, "maxInputLen": 1024})).max_num_tokens == 2048
    assert engine_inputs(spec()).max_num_tokens == 8192
    assert engine_inputs(spec(tensorrtLLM={"maxNumTokens": 16384})).max_num_tokens == 16384


def test_builder_command_carries_the_inputs_and_refuses_a_wrong_key():
    model = spec()
    inputs = engine_inputs(model)
    command = builder_command(model, cache_key(inputs), None)
    assert command[:3] == ["python3", "-m", "conch_engines.tensorrt_llm.builder"]
    assert trtllm.EngineInputs.from_json(command[command.index("--inputs") + 1]) == inputs
    assert "--source-dir" not in command
    assert builder_command(model, cache_key(inputs), "/source/qwen")[-2:] == ["--source-dir", "/source/qwen"]
    with pytest.raises(ValueError, match="does not match"):
        builder_command(model, "0" * 20, None)


def test_serve_command_single_gpu_is_plain_tritonserver():
    command = serve_command(spec(), "/repo")
    assert command == ["tritonserver", "--model-repository=/repo", "--grpc-port=8001", "--http-port=8000",
                       "--metrics-port=8002", "--disable-auto-complete-config",
                       "--backend-config=python,shm-region-prefix-name=prefix0_"]


@pytest.mark.parametrize("backend", ["engine", "pytorch"])
def test_serve_command_tensor_parallel_runs_one_rank_per_gpu(backend):
    command = serve_command(spec(quantization="fp8", engine={"tensorParallel": 4}, tensorrtLLM={"backend": backend}),
                            "/repo")
    assert command[:2] == ["mpirun", "--allow-run-as-root"]
    ranks = " ".join(command[2:]).split(" : ")
    assert len(ranks) == 4
    for rank, text in enumerate(ranks):
        args = text.split()
        assert args[:3] == ["-n", "1", "tritonserver"]
        assert f"--backend-config=python,shm-region-prefix-name=prefix{rank}_" in args
        assert "--disable-auto-complete-config" in args and "--http-port=8000" in args
        explicit = {"--model-control-mode=explicit", "--load-model=tensorrt_llm"}
        assert explicit <= set(args) if rank else not explicit & set(args)
