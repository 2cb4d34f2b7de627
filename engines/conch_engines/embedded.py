"""The embedded default: a local Triton serving the bundled 4-bit SmolLM2 and the bundled
all-MiniLM-L6-v2 embedding model on CPU, plus the gateway in front of it — no cluster. This is
what `make up` runs, in the foreground.

Triton and the gateway are child processes that die with this one (PR_SET_PDEATHSIG), and
Ctrl-C / SIGTERM stops both, so no orphan is ever left behind.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from conch_api import API_VERSION

from . import bundled, repository, sources
from .triton_server import TritonPorts, TritonServer, TritonStartError, die_with_parent, port_is_free


@dataclass(frozen=True)
class EmbeddedConfig:
    state_dir: Path
    gateway_port: int = 8000
    triton_http_port: int = 8100
    n_ctx: int = 4096
    model: str = "smollm2"  # a model spec (sources.py): preset, .gguf path or Hugging Face repo
    device: str = "auto"  # cpu | auto | cuda:N

    @classmethod
    def from_env(cls, model: str | None = None, port: int | None = None, device: str | None = None) -> "EmbeddedConfig":
        return cls(
            model=model or "smollm2",
            device=device or "auto",
            state_dir=Path(os.environ.get("CONCH_STATE_DIR", Path.cwd() / ".conch")).resolve() / "embedded",
            gateway_port=port if port is not None else int(os.environ.get("PORT") or "8000"),
            triton_http_port=int(os.environ.get("TRITON_HTTP_PORT", "8100")),
            n_ctx=int(os.environ.get("CONCH_N_CTX", "4096")),
        )


def bundled_model_resource(model: bundled.BundledModel, triton_url: str, grpc_address: str | None = None,
                           n_ctx: int = 4096) -> dict:
    """The bundled model as a `Model` resource, as the operator would publish it once Ready
    (with Triton's gRPC address, which the gateway streams over)."""
    template = bundled.gguf_metadata(model.gguf_path).get("tokenizer.chat_template")
    return {
        "apiVersion": API_VERSION,
        "kind": "Model",
        "metadata": {"name": model.id},
        "spec": {
            "displayName": model.display_name,
            "runtime": "llama-cpp",
            "source": {"file": {"path": str(model.gguf_path)}},
            "promptFamily": model.prompt_family,
            **({"chatTemplate": template} if template else {}),
            # the context llama.cpp runs with: the gateway tells a full context ("length") from a stop
            "engine": {"maxSeqLen": n_ctx, "maxInputLen": n_ctx // 2},
        },
        "status": {
            "phase": "Ready",
            "conditions": [{"type": "Ready", "status": "True", "reason": "Embedded", "message": "local Triton"}],
            "endpoint": triton_url,
            **({"grpcAddress": grpc_address} if grpc_address else {}),
            "tritonModel": model.id,
            "interface": "ensemble",
        },
    }


def embedding_model_resource(model: bundled.BundledEmbeddingModel, triton_url: str) -> dict:
    """The bundled embedding model as a `Model` resource: runtime `external` (the operator has no
    embedding runtime; here it is the local Triton), published Ready like the bundled LLM."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Model",
        "metadata": {"name": model.id},
        "spec": {
            "displayName": model.display_name,
            "runtime": "external",
            "external": {"url": triton_url, "tritonModel": model.id, "interface": "embedding"},
        },
        "status": {
            "phase": "Ready",
            "conditions": [{"type": "Ready", "status": "True", "reason": "Embedded", "message": "local Triton"}],
            "endpoint": triton_url,
            "tritonModel": model.id,
            "interface": "embedding",
        },
    }


def chosen_model(spec: str) -> bundled.BundledModel:
    """The model a spec names, as the bundled model's record (id derived from the spec)."""
    source = sources.parse(spec)
    if source.kind == "huggingface":
        print(f"[conch] fetching {source.repo_id}{':' + source.filename if source.filename else ''} from the Hugging Face "
              "hub (or its local cache)", flush=True)
    path = sources.resolve(source)
    if source.kind == "bundled":
        return bundled.smollm2()
    # promptFamily only matters without a GGUF chat template; llama.cpp reads the template itself
    return bundled.BundledModel(id=source.model_id, display_name=path.name, gguf_path=path, prompt_family="chatml")


def prepare(config: EmbeddedConfig, model: bundled.BundledModel | None = None
            ) -> tuple[Path, Path, bundled.BundledModel, bundled.BundledEmbeddingModel]:
    """Writes the Triton model repository and the gateway's model file (a YAML stream, one
    `Model` per document); returns their paths and the two models."""
    model, embedder = model or bundled.smollm2(), bundled.minilm()
    repo = repository.write_repository(config.state_dir / "repository", {
        **repository.llama_cpp_files(model.id, str(model.gguf_path), n_ctx=config.n_ctx),
        **repository.embedding_files(embedder.id, str(embedder.model_dir)),
    })
    models_file = config.state_dir / "models.yaml"
    triton_url = f"http://127.0.0.1:{config.triton_http_port}"
    grpc_address = f"127.0.0.1:{TritonPorts.from_http(config.triton_http_port).grpc}"
    resources = [bundled_model_resource(model, triton_url, grpc_address, config.n_ctx),
                 embedding_model_resource(embedder, triton_url)]
    models_file.write_text(yaml.safe_dump_all(resources, sort_keys=False))
    return repo, models_file, model, embedder


def start_gateway(config: EmbeddedConfig, models_file: Path) -> subprocess.Popen:
    # Ctrl-C should stop a laptop's stack at once: requests in flight get a short grace, then end
    # with an error the client understands (SHUTTING_DOWN), not the cluster's 20 s.
    env = dict(os.environ, PORT=str(config.gateway_port), CONCH_HOST="127.0.0.1",
               CONCH_MODEL_SOURCE="local", CONCH_LOCAL_MODELS_FILE=str(models_file))
    env.setdefault("CONCH_SHUTDOWN_GRACE_S", "2")
    env.setdefault("CONCH_MANAGEMENT", "true")  # the laptop's management API over this Triton (docs/management.md)
    return subprocess.Popen([sys.executable, "-m", "conch_gateway"], env=env, preexec_fn=die_with_parent)


def wait_for_gateway(process: subprocess.Popen, port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with code {process.returncode} (its log is above)")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return
        except urllib.error.HTTPError:
            return  # 503 still means it is serving
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the gateway did not answer on port {port} within {timeout:.0f}s")


def device_layers(device: str) -> int:
    """llama.cpp's n_gpu_layers for a --device (0: CPU). The embedded llama.cpp runtime does not
    offload layers to a GPU yet, so `auto` is the CPU and `cuda:N` is refused with the reason,
    rather than accepted and silently run on the CPU."""
    if device in ("cpu", "auto"):
        return 0
    if re.fullmatch(r"cuda:\d+", device):
        if not _gpu_offload():
            raise sources.SourceError(f"--device {device}: the installed llama.cpp is a CPU-only build or no NVIDIA GPU is "
                                      "visible; use --device cpu (or auto)")
        raise sources.SourceError(f"--device {device}: the embedded llama.cpp runtime does not offload to a GPU yet; "
                                  "use --device cpu (or auto), or the tensorrt-llm runtime on Kubernetes for GPUs")
    raise sources.SourceError(f"--device {device!r}: use cpu, auto or cuda:N")


def _gpu_offload() -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload()) and Path("/dev/nvidiactl").exists()


def run(config: EmbeddedConfig) -> int:
    say = lambda message: print(f"[conch] {message}", flush=True)  # noqa: E731
    # Everything that can refuse the start is checked before anything is written: a second
    # `make up` must not rewrite the files of the one already running.
    triton_ports = TritonPorts.from_http(config.triton_http_port)
    wanted = {config.gateway_port: "PORT", triton_ports.http: "TRITON_HTTP_PORT",
              triton_ports.grpc: "TRITON_HTTP_PORT (gRPC is the next port)",
              triton_ports.metrics: "TRITON_HTTP_PORT (metrics are two ports above)"}
    for port, setting in wanted.items():
        if not port_is_free(port):
            say(f"port {port} is already in use; set {setting} to move it")
            return 2
    config.state_dir.mkdir(parents=True, exist_ok=True)
    lock = open(config.state_dir / ".lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        say(f"another `make up` is running with the state directory {config.state_dir}; set CONCH_STATE_DIR to "
            "run a second one")
        return 2
    try:
        n_gpu_layers = device_layers(config.device)
        model = chosen_model(config.model)
    except sources.SourceError as exc:
        say(str(exc))
        return 2
    if model.id == "smollm2":
        say("serving the bundled SmolLM2-135M: a 135M-parameter TEST model, its answers are often poor; "
            "for real answers use --model qwen2, llama3 or your own GGUF (see docs/models.md)")
    if n_gpu_layers == 0:
        say("CPU only: Triton may log that it cannot find CUDA / a GPU; that message is harmless here")
    repo, models_file, model, embedder = prepare(config, model)
    # explicit model control: the management API (docs/management.md) loads and unloads models
    triton = TritonServer(repo, config.state_dir / "triton", TritonPorts.from_http(config.triton_http_port),
                          extra_args=("--model-control-mode=explicit", "--load-model=*"))
    say(f"starting Triton Inference Server with {model.display_name} and {embedder.display_name} (log: {triton.log_path})")
    try:
        triton.start()
    except TritonStartError as exc:
        say(str(exc))
        return 1
    gateway = None
    stopping = False

    def stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        gateway = start_gateway(config, models_file)
        wait_for_gateway(gateway, config.gateway_port)
        ports = triton.ports
        say(f"Triton:  http://127.0.0.1:{ports.http}  (gRPC 127.0.0.1:{ports.grpc}, metrics http://127.0.0.1:{ports.metrics}/metrics)")
        say(f"Gateway: http://127.0.0.1:{config.gateway_port}  (model id: {model.id}; API docs at /docs)")
        say(f"Embeddings: model id {embedder.id} ({embedder.display_name}, {embedder.dimensions} dimensions)")
        say("Ctrl-C stops both.")
        while not stopping:
            if gateway.poll() is not None:
                say(f"the gateway exited with code {gateway.returncode}")
                return 1
            if not triton.is_running():
                say(f"Triton exited unexpectedly. Its log ends with:\n{triton.log_tail()}")
                return 1
            time.sleep(0.5)
        say("stopping")
        return 0
    except RuntimeError as exc:
        say(str(exc))
        return 1
    finally:
        if gateway is not None and gateway.poll() is None:
            gateway.terminate()
            try:
                gateway.wait(15)
            except subprocess.TimeoutExpired:
                gateway.kill()
        triton.stop()
