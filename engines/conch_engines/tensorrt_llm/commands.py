"""Command lines: the engine build steps, the build Job's entrypoint and the Triton server.

Every flag used here is checked by tests/unit/test_trtllm_build.py against the flags that
TensorRT-LLM 1.2.1's scripts declare (reference/trtllm-1.2.1.json).
"""

from __future__ import annotations

from conch_api import ModelSpec

from .inputs import EngineInputs, cache_key, engine_inputs
from .pins import EXAMPLES_DIR

# config.json `architectures` -> the examples/models/core/<dir> whose convert_checkpoint.py handles it
ARCHITECTURE_EXAMPLES = {
    "LlamaForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen",
}
AWQ_BLOCK_SIZE = 128
# quantize.py's own default; calibration reads this many cnn_dailymail samples (downloaded by the Job).
CALIB_SIZE = 512
CHECKPOINT_DTYPE = "float16"
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002


class UnsupportedArchitecture(ValueError):
    pass


def example_for(architecture: str) -> str:
    try:
        return ARCHITECTURE_EXAMPLES[architecture]
    except KeyError:
        raise UnsupportedArchitecture(
            f"architecture {architecture!r} is not supported by Conch's TensorRT-LLM engine builder "
            f"(supported: {', '.join(sorted(ARCHITECTURE_EXAMPLES))})") from None


def checkpoint_command(inputs: EngineInputs, *, checkpoint_dir: str, out: str, architecture: str,
                       examples_dir: str = EXAMPLES_DIR) -> list[str]:
    """HF checkpoint -> TensorRT-LLM checkpoint, quantized as asked, sharded for tensor parallelism."""
    common = ["--model_dir", checkpoint_dir, "--output_dir", out, "--dtype", CHECKPOINT_DTYPE,
              "--tp_size", str(inputs.tensor_parallel)]
    quantize = ["python3", f"{examples_dir}/quantization/quantize.py", *common]
    convert = ["python3", f"{examples_dir}/models/core/{example_for(architecture)}/convert_checkpoint.py", *common]
    match inputs.quantization:
        case "int4_awq":  # ModelOpt AWQ, W4A16 with 128-wide groups
            return [*quantize, "--qformat", "int4_awq", "--awq_block_size", str(AWQ_BLOCK_SIZE),
                    "--calib_size", str(CALIB_SIZE)]
        case "fp8":
            return [*quantize, "--qformat", "fp8", "--calib_size", str(CALIB_SIZE)]
        case "int4_gptq":  # the source must already be a GPTQ checkpoint (desc_act=False)
            return [*convert, "--use_weight_only", "--weight_only_precision", "int4_gptq", "--per_group"]
        case "none":
            return convert
    raise ValueError(f"unknown quantization {inputs.quantization!r}")


def trtllm_build_command(inputs: EngineInputs, *, checkpoint: str, engine_out: str) -> list[str]:
    command = [
        "trtllm-build", "--checkpoint_dir", checkpoint, "--output_dir", engine_out,
        "--max_batch_size", str(inputs.max_batch_size), "--max_input_len", str(inputs.max_input_len),
        "--max_seq_len", str(inputs.max_seq_len), "--max_num_tokens", str(inputs.max_num_tokens),
        "--kv_cache_type", "paged", "--multiple_profiles", "enable", "--gemm_plugin", "auto",
        "--workers", str(inputs.tensor_parallel),
    ]
    if inputs.enable_kv_cache_reuse:  # KV-cache reuse and chunked context need paged context FMHA
        command += ["--use_paged_context_fmha", "enable"]
    return command


def build_commands(inputs: EngineInputs, *, checkpoint_dir: str, work_dir: str, engine_out: str,
                   architecture: str, examples_dir: str = EXAMPLES_DIR) -> list[list[str]]:
    """The argv lists the build Job runs in order: quantize/convert, then trtllm-build."""
    trtllm_checkpoint = f"{work_dir}/trtllm-checkpoint"
    return [
        checkpoint_command(inputs, checkpoint_dir=checkpoint_dir, out=trtllm_checkpoint,
                           architecture=architecture, examples_dir=examples_dir),
        trtllm_build_command(inputs, checkpoint=trtllm_checkpoint, engine_out=engine_out),
    ]


def builder_command(spec: ModelSpec, key: str, source_dir: str | None) -> list[str]:
    """argv of the build Job's container. source_dir is where the Job mounts a PVC checkpoint;
    None means download source.huggingFace (HF_TOKEN from the environment when gated)."""
    inputs = engine_inputs(spec)
    if cache_key(inputs) != key:
        raise ValueError(f"cache key {key} does not match the spec (expected {cache_key(inputs)})")
    command = ["python3", "-m", "conch_engines.tensorrt_llm.builder", "--key", key, "--inputs", inputs.to_json()]
    if source_dir is not None:
        command += ["--source-dir", source_dir]
    return command


def _tritonserver(repository_dir: str, rank: int) -> list[str]:
    command = ["tritonserver", f"--model-repository={repository_dir}", f"--grpc-port={GRPC_PORT}",
               f"--http-port={HTTP_PORT}", f"--metrics-port={METRICS_PORT}"]
    if rank != 0:
        # launch_triton_server.py: ranks other than 0 load only the TensorRT-LLM model. They keep
        # the same ports; they never bind them because their model does not finish loading (the
        # worker ranks serve rank 0's executor over MPI until shutdown).
        command += ["--model-control-mode=explicit", "--load-model=tensorrt_llm"]
    # The repository's configs are complete (decoupled, max_batch_size included), so Triton must
    # not complete them: that is also what launch_triton_server.py passes.
    return command + ["--disable-auto-complete-config", f"--backend-config=python,shm-region-prefix-name=prefix{rank}_"]


def serve_command(spec: ModelSpec, repository_dir: str) -> list[str]:
    """argv of the serving container.

    One GPU: a plain tritonserver. Tensor parallel N: `mpirun --allow-run-as-root` with one
    `-n 1 tritonserver …` rank per GPU, as TensorRT-LLM 1.2.1's
    triton_backend/scripts/launch_triton_server.py builds it ("leader mode").

    Backend pytorch uses the same layout, which is what docs/llmapi.md's launch
    (`launch_triton_server.py --model_repo=llmapi_repo/`, with --world_size N for N GPUs) yields:
    the llmapi model.py on rank 0 builds LLM() with an MpiCommSession over COMM_WORLD, and on the
    other ranks joins that session as a worker (MPICommExecutor) — so every rank must load the
    `tensorrt_llm` model, which the explicit --load-model does. trtllm-llmapi-launch is only
    needed for multi-node (srun) launches, which a single pod never is.
    """
    world_size = spec.engine.tensorParallel
    if world_size == 1:
        return _tritonserver(repository_dir, 0)
    command = ["mpirun", "--allow-run-as-root"]
    for rank in range(world_size):
        if rank:
            command.append(":")
        command += ["-n", "1", *_tritonserver(repository_dir, rank)]
    return command
