"""Generated Triton configs parse with Triton's own ModelConfig protobuf."""

from __future__ import annotations

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from conch_engines import repository
from conch_engines.contract import ENSEMBLE_INPUTS


def parse_with_triton(text: str) -> mc.ModelConfig:
    """Parsed by Triton's own ModelConfig protobuf, as imported from tritonclient."""
    return text_format.Parse(text, mc.ModelConfig())


def test_llama_cpp_config_parses_with_tritons_protobuf():
    files = repository.llama_cpp_files("smollm2", "/models/x.gguf", n_ctx=2048, n_threads=2)
    config = parse_with_triton(files["smollm2/config.pbtxt"])
    assert config.name == "smollm2" and config.backend == "python"
    assert config.model_transaction_policy.decoupled
    assert config.max_batch_size == 1
    assert config.parameters["gguf_path"].string_value == "/models/x.gguf"
    assert config.parameters["n_ctx"].string_value == "2048"
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    inputs = {t.name: t for t in config.input}
    assert not inputs["text_input"].optional and not inputs["max_tokens"].optional
    assert inputs["seed"].data_type == mc.TYPE_UINT64 and inputs["min_tokens"].data_type == mc.TYPE_INT32
    assert "random_seed" not in inputs and "min_length" not in inputs
    assert all(inputs[name].optional for name in inputs if name not in ("text_input", "max_tokens"))
    assert list(inputs["stop_words"].dims) == [-1]
    assert {t.name for t in config.output} == {"text_output", "num_input_tokens", "num_output_tokens"}
    assert "conch_engines.runtimes.llama_cpp.triton_model" in files["smollm2/1/model.py"]


def test_every_contract_input_is_declared():
    config = repository.echo_config("echo")
    assert [t.name for t in config.input] == [s.name for s in ENSEMBLE_INPUTS]


def test_rendering_round_trips():
    config = repository.llama_cpp_config("m", "/a.gguf")
    assert parse_with_triton(repository.render_config(config)) == parse_with_triton(str(config))


def test_write_repository(tmp_path):
    root = repository.write_repository(tmp_path / "repo", repository.echo_files("echo"))
    assert (root / "echo" / "config.pbtxt").is_file()
    assert (root / "echo" / "1" / "model.py").is_file()
