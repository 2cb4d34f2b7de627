"""Which GGUF to serve: a model spec → a local file.

A spec is one of
  * a preset name (`smollm2` = the bundled 135M test model; `qwen2`, `llama3` = public GGUFs),
  * a path to a local `.gguf` file,
  * a Hugging Face `REPO_ID` (its single `*Q4_K_M.gguf`, case-insensitive) or `REPO_ID:FILE.gguf`.

Parsing is pure (`parse`); `resolve` does the I/O. Downloads go through huggingface_hub's
`hf_hub_download` (progress bar, shared cache, resume of a partial file; HF_ENDPOINT / HF_HOME are
honoured), so nothing here speaks HTTP itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

GGUF_MAGIC = b"GGUF"


class SourceError(Exception):
    """A spec that cannot be served; the message is one line meant for the user."""


@dataclass(frozen=True)
class Preset:
    repo_id: str | None  # None: the bundled model
    filename: str | None
    description: str


PRESETS: dict[str, Preset] = {
    "smollm2": Preset(None, None, "bundled SmolLM2-135M-Instruct Q4_1 (a 135M test model: answers are often poor)"),
    "qwen2": Preset("Qwen/Qwen2-0.5B-Instruct-GGUF", "qwen2-0_5b-instruct-q4_k_m.gguf",
                    "Qwen2-0.5B-Instruct Q4_K_M (~400 MB)"),
    "llama3": Preset("bartowski/Llama-3.2-1B-Instruct-GGUF", "Llama-3.2-1B-Instruct-Q4_K_M.gguf",
                     "Llama-3.2-1B-Instruct Q4_K_M (~800 MB)"),
}

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class ModelSource:
    kind: str  # "bundled" | "file" | "huggingface"
    model_id: str  # the id clients send as `model`
    path: Path | None = None
    repo_id: str | None = None
    filename: str | None = None  # None: pick the repo's Q4_K_M file


def _model_id(stem: str) -> str:
    """A client-friendly id: lower case, `[a-z0-9._-]`, e.g. `qwen2-0_5b-instruct-q4_k_m`."""
    return re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-._") or "model"


def parse(spec: str) -> ModelSource:
    """Pure: what the spec names. A path is recognised by ending in `.gguf` or containing a path
    separator that is not a `owner/name` repo id; a preset by its name."""
    spec = spec.strip()
    if not spec:
        raise SourceError("empty --model: give a preset (" + ", ".join(PRESETS) + "), a .gguf path or a Hugging Face repo id")
    if spec in PRESETS:
        preset = PRESETS[spec]
        if preset.repo_id is None:
            return ModelSource("bundled", spec)
        return ModelSource("huggingface", spec, repo_id=preset.repo_id, filename=preset.filename)
    repo, _, filename = spec.partition(":")
    if _REPO_ID.match(repo) and not Path(spec).exists() and not spec.startswith((".", "/", "~")):
        if filename and not filename.lower().endswith(".gguf"):
            raise SourceError(f"{spec}: the file after ':' must be a .gguf file")
        if not filename and repo.lower().endswith(".gguf"):
            return ModelSource("file", _model_id(Path(spec).stem), path=Path(spec))
        # a repo's name usually ends in -GGUF, which says nothing to a client choosing a model
        stem = Path(filename).stem if filename else re.sub(r"[-_.]gguf$", "", repo.split("/")[1], flags=re.I)
        return ModelSource("huggingface", _model_id(stem), repo_id=repo, filename=filename or None)
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".gguf" or "/" in spec:
        return ModelSource("file", _model_id(path.stem), path=path)
    raise SourceError(f"unknown model {spec!r}: use a preset ({', '.join(PRESETS)}), a path to a .gguf file, "
                      "or a Hugging Face REPO_ID[:FILE.gguf]")


def check_gguf(path: Path) -> Path:
    if not path.is_file():
        raise SourceError(f"model file not found: {path}")
    with path.open("rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise SourceError(f"{path} is not a GGUF file (llama.cpp serves GGUF only; convert it with llama.cpp's convert_hf_to_gguf.py)")
    return path.absolute()  # not resolve(): the hub cache links snapshots/…/FILE.gguf to an etag-named blob


def pick_gguf(files: list[str]) -> str:
    """Pure: the one Q4_K_M GGUF of a repo listing (a 4-bit default that keeps quality)."""
    ggufs = [f for f in files if f.lower().endswith(".gguf")]
    q4 = [f for f in ggufs if "q4_k_m" in f.lower() and "-of-" not in f.lower()]
    if len(q4) == 1:
        return q4[0]
    if len(ggufs) == 1:
        return ggufs[0]
    if not ggufs:
        raise SourceError("the repository has no .gguf file")
    raise SourceError("the repository has several .gguf files; name one as REPO_ID:FILE.gguf (" + ", ".join(sorted(ggufs)[:6]) + ")")


def resolve(source: ModelSource) -> Path:
    """The local GGUF for a source, downloading it into the Hugging Face cache if needed."""
    if source.kind == "bundled":
        from . import bundled

        try:
            return bundled.smollm2().gguf_path
        except FileNotFoundError as exc:
            raise SourceError(str(exc)) from None
    if source.kind == "file":
        return check_gguf(source.path)
    return check_gguf(Path(_download(source.repo_id, source.filename)))


def _download(repo_id: str, filename: str | None) -> str:
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        if filename is None:
            filename = pick_gguf(HfApi().list_repo_files(repo_id))
        return hf_hub_download(repo_id, filename)
    except RepositoryNotFoundError:
        raise SourceError(f"Hugging Face repository {repo_id} not found (or it is gated: set HF_TOKEN)") from None
    # LocalEntryNotFoundError (offline) is a kind of EntryNotFoundError: it must come first
    except LocalEntryNotFoundError:
        raise SourceError(f"cannot reach the Hugging Face hub for {repo_id}/{filename} and it is not in the local "
                          "cache; download it where there is network, or pass a local .gguf path") from None
    except EntryNotFoundError:
        raise SourceError(f"{filename} is not in the Hugging Face repository {repo_id}") from None
    except OSError as exc:  # requests' connection errors are OSErrors
        raise SourceError(f"cannot download {repo_id}/{filename}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
