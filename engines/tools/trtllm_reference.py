"""Regenerate engines/conch_engines/tensorrt_llm/reference/trtllm-<version>.json from a
TensorRT-LLM source checkout (run it once per pin; CI never runs it and never downloads anything):

    git clone --depth 1 -b v1.2.1 https://github.com/NVIDIA/TensorRT-LLM /tmp/trtllm
    python engines/tools/trtllm_reference.py /tmp/trtllm > \
        engines/conch_engines/tensorrt_llm/reference/trtllm-1.2.1.json

It reads the sources with `ast` (nothing is imported, so no GPU or tensorrt_llm install is
needed): argparse `add_argument` flags of trtllm-build, quantize.py and the llama/qwen
convert_checkpoint.py, trtllm-build's plugin flags (`cli_plugin_args`), and the pydantic fields
of BaseLlmArgs/TorchLlmArgs/KvCacheConfig. Choices are read where they are literal lists.
The checked-in file keeps its `_about`/`sources` notes; rewrite them to name the tag's commit.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

SCRIPTS = {
    "trtllm_build": "tensorrt_llm/commands/build.py",
    "quantize_py": "examples/quantization/quantize.py",
    "llama": "examples/models/core/llama/convert_checkpoint.py",
    "qwen": "examples/models/core/qwen/convert_checkpoint.py",
}


def argparse_flags(source: str) -> tuple[list[str], dict[str, list[str]]]:
    flags, choices = set(), {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            names = [a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("-")]
            flags.update(names)
            for keyword in node.keywords:
                if keyword.arg == "choices" and isinstance(keyword.value, ast.List) and names:
                    choices[names[0]] = [e.value for e in keyword.value.elts if isinstance(e, ast.Constant)]
    return sorted(flags), choices


def class_fields(source: str, *classes: str) -> list[str]:
    fields = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and node.name in classes:
            fields.update(item.target.id for item in node.body
                          if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
                          and not item.target.id.startswith("_") and "ClassVar" not in ast.unparse(item.annotation))
    return sorted(fields)


def plugin_flags(source: str) -> list[str]:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "cli_plugin_args" for t in node.targets):
            return ["--" + e.value for e in node.value.elts]
    raise SystemExit("cli_plugin_args not found in plugin.py")


def main(root: Path) -> dict:
    read = lambda path: (root / path).read_text()  # noqa: E731
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    scripts = {name: argparse_flags(read(path)) for name, path in SCRIPTS.items()}
    build_flags, build_choices = scripts["trtllm_build"]
    llm_args = read("tensorrt_llm/llmapi/llm_args.py")
    return {
        "tensorrt_llm_version": ast.literal_eval(read("tensorrt_llm/version.py").split("=", 1)[1].strip()),
        "sources": {name: {"file": path, "commit": commit} for name, path in SCRIPTS.items()},
        "trtllm_build": {"flags": sorted(build_flags + plugin_flags(read("tensorrt_llm/plugin/plugin.py"))),
                         "choices": build_choices},
        "quantize_py": {"flags": scripts["quantize_py"][0], "choices": scripts["quantize_py"][1]},
        "convert_checkpoint": {name: {"flags": scripts[name][0], "choices": scripts[name][1]} for name in ("llama", "qwen")},
        "llm_args": {"fields": class_fields(llm_args, "BaseLlmArgs", "TorchLlmArgs"),
                     "kv_cache_config": class_fields(llm_args, "KvCacheConfig")},
    }


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1])), indent=1))
