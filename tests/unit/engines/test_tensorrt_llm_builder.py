"""Orchestration of the build Job (conch_engines.tensorrt_llm.builder).

ORCHESTRATION ONLY: quantize.py / convert_checkpoint.py / trtllm-build are tiny stand-in
scripts that create their --output_dir. These tests prove the order of steps, the scratch ->
engines/<key> rename, the skip when built, the manifest and the termination message — nothing
about TensorRT-LLM's own behaviour, which never ran here (no GPU).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from conch_api import ModelSpec

from conch_engines.tensorrt_llm import cache_key, engine_inputs
from conch_engines.tensorrt_llm.builder import main

STAND_IN = """#!/usr/bin/env python3
import sys, os, json
args = sys.argv[1:]
out = args[args.index("--output_dir") + 1]
os.makedirs(out, exist_ok=True)
open(os.path.join(out, "made-by.json"), "w").write(json.dumps(args))
with open(os.environ["STAND_IN_LOG"], "a") as log:
    log.write(os.path.basename(sys.argv[0]) + "\\n")
sys.exit(int(os.environ.get("STAND_IN_EXIT_" + os.path.basename(sys.argv[0]).replace(".", "_").replace("-", "_"), "0")))
"""


@pytest.fixture
def stand_ins(tmp_path, monkeypatch):
    examples = tmp_path / "examples"
    for script in ("quantization/quantize.py", "models/core/llama/convert_checkpoint.py",
                   "models/core/qwen/convert_checkpoint.py"):
        (examples / script).parent.mkdir(parents=True, exist_ok=True)
        (examples / script).write_text(STAND_IN)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "trtllm-build").write_text(STAND_IN)
    (bin_dir / "trtllm-build").chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STAND_IN_LOG", str(tmp_path / "steps.log"))
    return examples


def checkpoint(tmp_path: Path, architecture: str = "Qwen2ForCausalLM", **config) -> Path:
    source = tmp_path / "source"
    source.mkdir()
    (source / "config.json").write_text(json.dumps({"architectures": [architecture], **config}))
    (source / "tokenizer.json").write_text("{}")
    (source / "tokenizer_config.json").write_text("{}")
    (source / "model.safetensors").write_text("weights")
    return source


def run(tmp_path, examples, source, quantization="int4_awq"):
    model = ModelSpec.model_validate({"runtime": "tensorrt-llm", "quantization": quantization, "gpu": {"count": 1},
                                      "source": {"pvc": {"claimName": "weights", "path": "/qwen"}}})
    inputs = engine_inputs(model)
    key = cache_key(inputs)
    code = main(["--key", key, "--inputs", inputs.to_json(), "--source-dir", str(source),
                 "--cache-root", str(tmp_path / "cache"), "--examples-dir", str(examples),
                 "--termination-log", str(tmp_path / "termination-log")])
    return code, key


def test_builds_into_scratch_then_renames_and_skips_next_time(tmp_path, stand_ins):
    code, key = run(tmp_path, stand_ins, checkpoint(tmp_path))
    assert code == 0
    final = tmp_path / "cache" / "engines" / key
    assert (tmp_path / "steps.log").read_text().split() == ["quantize.py", "trtllm-build"]
    assert (final / "engine" / "made-by.json").is_file()
    assert sorted(p.name for p in (final / "tokenizer").iterdir()) == ["config.json", "tokenizer.json",
                                                                       "tokenizer_config.json"]
    assert not (final / "work").exists() and not (tmp_path / "cache" / ".scratch" / key).exists()
    manifest = json.loads((final / "conch-engine.json").read_text())
    assert manifest["key"] == key and manifest["architecture"] == "Qwen2ForCausalLM"
    assert manifest["versions"]["tensorrt_llm"] == "1.2.1" and manifest["inputs"]["quantization"] == "int4_awq"
    assert set(manifest["timings"]) == {"source_seconds", "checkpoint_seconds", "engine_seconds"}

    (tmp_path / "steps.log").unlink()
    assert run(tmp_path, stand_ins, tmp_path / "source")[0] == 0
    assert not (tmp_path / "steps.log").exists()  # already built: nothing ran


def test_a_failing_step_leaves_no_engine_and_a_one_line_reason(tmp_path, stand_ins, monkeypatch):
    monkeypatch.setenv("STAND_IN_EXIT_trtllm_build", "3")
    code, key = run(tmp_path, stand_ins, checkpoint(tmp_path))
    assert code == 1
    assert not (tmp_path / "cache" / "engines" / key).exists()
    reason = (tmp_path / "termination-log").read_text()
    assert reason == "BuildError: trtllm-build exited with 3\n"


def test_unsupported_architecture_is_refused_before_any_step(tmp_path, stand_ins):
    assert run(tmp_path, stand_ins, checkpoint(tmp_path, "MistralForCausalLM"))[0] == 1
    assert "MistralForCausalLM" in (tmp_path / "termination-log").read_text()
    assert not (tmp_path / "steps.log").exists()


def test_int4_gptq_needs_a_gptq_checkpoint(tmp_path, stand_ins):
    assert run(tmp_path, stand_ins, checkpoint(tmp_path), quantization="int4_gptq")[0] == 1
    assert "GPTQ checkpoint" in (tmp_path / "termination-log").read_text()


def test_int4_gptq_runs_convert_checkpoint(tmp_path, stand_ins):
    source = checkpoint(tmp_path, quantization_config={"quant_method": "gptq", "desc_act": False, "bits": 4})
    assert run(tmp_path, stand_ins, source, quantization="int4_gptq")[0] == 0
    assert (tmp_path / "steps.log").read_text().split() == ["convert_checkpoint.py", "trtllm-build"]


def test_a_key_that_does_not_match_the_inputs_is_refused(tmp_path):
    inputs = engine_inputs(ModelSpec.model_validate({"runtime": "tensorrt-llm", "gpu": {"count": 1},
                                                     "source": {"huggingFace": {"repoId": "a/b"}}}))
    assert main(["--key", "0" * 20, "--inputs", inputs.to_json(), "--cache-root", str(tmp_path),
                 "--termination-log", str(tmp_path / "t")]) == 1
    assert "is not the cache key" in (tmp_path / "t").read_text()


def test_a_retried_build_keeps_what_the_failed_attempt_downloaded(tmp_path, stand_ins, monkeypatch):
    """Hugging Face sources land outside the scratch dir each attempt wipes, so a retry resumes the
    download; once the engine is built the download is dropped (the stand-in plays
    snapshot_download: it fills the directory it is given and counts files it had to fetch)."""
    from conch_engines.tensorrt_llm import builder

    fetched = []

    def fake_download(inputs, into):
        weights = into / "model.safetensors"
        if not weights.exists():
            fetched.append(weights.name)
            source = checkpoint(tmp_path / f"src{len(fetched)}")
            into.mkdir(parents=True, exist_ok=True)
            for item in source.iterdir():
                (into / item.name).write_bytes(item.read_bytes())
        return into

    (tmp_path / "src1").mkdir()
    (tmp_path / "src2").mkdir()
    monkeypatch.setattr(builder, "download", fake_download)
    inputs = engine_inputs(ModelSpec.model_validate({"runtime": "tensorrt-llm", "quantization": "int4_awq",
                                                     "gpu": {"count": 1},
                                                     "source": {"huggingFace": {"repoId": "Qwen/Qwen2-7B"}}}))
    key = cache_key(inputs)
    argv = ["--key", key, "--inputs", inputs.to_json(), "--cache-root", str(tmp_path / "cache"),
            "--examples-dir", str(stand_ins), "--termination-log", str(tmp_path / "termination-log")]
    monkeypatch.setenv("STAND_IN_EXIT_trtllm_build", "1")
    assert main(argv) == 1  # first attempt: downloaded, then trtllm-build failed
    monkeypatch.setenv("STAND_IN_EXIT_trtllm_build", "0")
    assert main(argv) == 0
    assert fetched == ["model.safetensors"]  # fetched once across both attempts
    assert not (tmp_path / "cache" / ".downloads" / key).exists()
    assert (tmp_path / "cache" / "engines" / key / "conch-engine.json").is_file()
