"""The engine build Job: `python3 -m conch_engines.tensorrt_llm.builder --key K --inputs JSON [--source-dir D]`.

Builds into CACHE_MOUNT/.scratch/<key> and renames it to CACHE_MOUNT/engines/<key> only once
complete, so a reader never sees half an engine; does nothing when that engine already exists.
On failure it writes one line to the termination log (Kubernetes shows it as the container's
termination message) and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .commands import build_commands
from .inputs import EngineInputs, cache_key
from .pins import CACHE_MOUNT, EXAMPLES_DIR, TRITON_TRTLLM_IMAGE, TRTLLM_VERSION

MANIFEST = "conch-engine.json"
# What preprocessing/postprocessing's AutoTokenizer needs; config.json tells it the model type.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "vocab.json", "merges.txt", "added_tokens.json", "generation_config.json", "config.json")


class BuildError(RuntimeError):
    """A failure with a reason worth a termination message."""


def architecture_of(checkpoint: Path, quantization: str) -> str:
    config_path = checkpoint / "config.json"
    if not config_path.is_file():
        raise BuildError(f"no config.json in {checkpoint}: not a Hugging Face checkpoint")
    config = json.loads(config_path.read_text())
    architectures = config.get("architectures") or []
    if len(architectures) != 1:
        raise BuildError(f"config.json lists architectures {architectures}; expected exactly one")
    if quantization == "int4_gptq":
        # convert_checkpoint.py reads GPTQ weights from the checkpoint's own quantization_config.
        quant = config.get("quantization_config") or {}
        if quant.get("quant_method") != "gptq":
            raise BuildError("quantization int4_gptq needs a GPTQ checkpoint (config.json quantization_config."
                             "quant_method: gptq), e.g. Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4")
        if quant.get("desc_act"):
            raise BuildError("GPTQ checkpoints with desc_act=true are not supported by TensorRT-LLM")
    return architectures[0]


def download(inputs: EngineInputs, into: Path) -> Path:
    from huggingface_hub import snapshot_download  # only the Job needs it

    return Path(snapshot_download(repo_id=inputs.hf_repo, revision=inputs.hf_revision, local_dir=into,
                                  token=os.environ.get("HF_TOKEN") or None))


def copy_tokenizer(checkpoint: Path, into: Path) -> None:
    into.mkdir(parents=True)
    copied = [name for name in TOKENIZER_FILES if (checkpoint / name).is_file()]
    if "tokenizer.json" not in copied and "tokenizer.model" not in copied and "vocab.json" not in copied:
        raise BuildError(f"no tokenizer files in {checkpoint}")
    for name in copied:
        shutil.copy2(checkpoint / name, into / name)


def run(command: list[str]) -> float:
    print("+", " ".join(command), flush=True)
    started = time.monotonic()
    result = subprocess.run(command)
    if result.returncode != 0:
        raise BuildError(f"{Path(command[1] if command[0] == 'python3' else command[0]).name} "
                         f"exited with {result.returncode}")
    return round(time.monotonic() - started, 1)


def build(key: str, inputs: EngineInputs, source_dir: Path | None, cache_root: Path, examples_dir: str) -> Path:
    final = cache_root / "engines" / key
    if (final / MANIFEST).is_file():
        print(f"engine {key} already built at {final}", flush=True)
        return final
    scratch = cache_root / ".scratch" / key
    shutil.rmtree(scratch, ignore_errors=True)  # leftovers of an earlier, failed attempt
    scratch.mkdir(parents=True)
    timings: dict[str, float] = {}

    started = time.monotonic()
    # Outside the scratch dir, which every attempt wipes: a retried build resumes the download
    # (snapshot_download skips files it already has) instead of fetching ~15 GB again.
    downloads = cache_root / ".downloads" / key
    checkpoint = source_dir if source_dir is not None else download(inputs, downloads)
    timings["source_seconds"] = round(time.monotonic() - started, 1)
    architecture = architecture_of(checkpoint, inputs.quantization)
    commands = build_commands(inputs, checkpoint_dir=str(checkpoint), work_dir=str(scratch / "work"),
                              engine_out=str(scratch / "engine"), architecture=architecture,
                              examples_dir=examples_dir)
    for step, command in zip(("checkpoint_seconds", "engine_seconds"), commands, strict=True):
        timings[step] = run(command)
    copy_tokenizer(checkpoint, scratch / "tokenizer")
    # The engine holds the weights now: drop the download and the intermediate checkpoint.
    shutil.rmtree(scratch / "work", ignore_errors=True)
    shutil.rmtree(downloads, ignore_errors=True)
    manifest = {"key": key, "inputs": json.loads(inputs.to_json()), "architecture": architecture,
                "versions": {"tensorrt_llm": TRTLLM_VERSION, "image": TRITON_TRTLLM_IMAGE}, "timings": timings,
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (scratch / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(scratch, final)
    except OSError:
        if not (final / MANIFEST).is_file():
            raise
        shutil.rmtree(scratch)  # another Job finished the same key first; its engine is as good
    print(f"engine {key} built at {final}", flush=True)
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--key", required=True)
    parser.add_argument("--inputs", required=True, help="EngineInputs as JSON")
    parser.add_argument("--source-dir", type=Path, help="mounted checkpoint; otherwise download from Hugging Face")
    parser.add_argument("--cache-root", type=Path, default=Path(CACHE_MOUNT))
    parser.add_argument("--examples-dir", default=EXAMPLES_DIR)
    parser.add_argument("--termination-log", type=Path, default=Path("/dev/termination-log"))
    args = parser.parse_args(argv)
    try:
        inputs = EngineInputs.from_json(args.inputs)
        if cache_key(inputs) != args.key:
            raise BuildError(f"--key {args.key} is not the cache key of --inputs ({cache_key(inputs)})")
        build(args.key, inputs, args.source_dir, args.cache_root, args.examples_dir)
    except Exception as error:  # noqa: BLE001 - every failure must reach the termination log
        reason = " ".join(f"{type(error).__name__}: {error}".split())[:1000]
        print(reason, file=sys.stderr, flush=True)
        try:
            args.termination_log.write_text(reason + "\n")
        except OSError:
            pass  # not in a container; stderr has it
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
