"""Building blocks of the integration tier: a test model repository, the Models that route to
it, and gateways serving them."""

from __future__ import annotations

import shutil
from pathlib import Path

from conch_api import Model
from conch_engines import bundled, repository
from conch_gateway.app import create_app
from conch_gateway.registry.local import LocalModelSource
from conch_gateway.settings import Settings

from . import REPO_ROOT, GatewayServer, model_resource

FAULT_MODEL = REPO_ROOT / "tests" / "integration" / "triton_models" / "fault"
N_CTX = 2048
CONTEXT = {"maxSeqLen": N_CTX, "maxInputLen": N_CTX // 2}  # spec.engine of Models served with N_CTX
LLMAPI_MODEL = "smollm2-llmapi"  # the same SmolLM2 behind TensorRT-LLM's llmapi interface


def write_test_repository(root: Path) -> Path:
    """The bundled SmolLM2 (twice: behind the ensemble and the llmapi interface), the echo
    model, and the fault-injecting test model."""
    model = bundled.smollm2()
    repository.write_repository(root, {
        **repository.llama_cpp_files("smollm2", str(model.gguf_path), n_ctx=N_CTX),
        **repository.llama_cpp_files(LLMAPI_MODEL, str(model.gguf_path), n_ctx=N_CTX, interface="llmapi"),
        **repository.echo_files("echo"),
        **repository.embedding_files("all-minilm-l6-v2", str(bundled.minilm().model_dir)),  # the bundled embedding model
        # two instances: a test can run a failing request next to a long one
        "fault/config.pbtxt": repository.render_config(repository.echo_config("fault", instances=2)),
    })
    (root / "fault" / "1").mkdir(parents=True, exist_ok=True)
    shutil.copy(FAULT_MODEL / "1" / "model.py", root / "fault" / "1" / "model.py")
    return root


def bundled_template() -> str:
    return bundled.gguf_metadata(bundled.smollm2().gguf_path)["tokenizer.chat_template"]


def repository_models(triton_url: str, grpc_address: str | None = None) -> list[Model]:
    """The test repository's models; with `grpc_address` they stream over gRPC, as the operator
    publishes them, otherwise over HTTP `generate_stream`."""
    grpc = {"grpc_address": grpc_address}
    return [
        Model.model_validate(model_resource("smollm2", triton_url, "smollm2", display_name="SmolLM2-135M-Instruct-Q4_1",
                                            chatTemplate=bundled_template(), engine=CONTEXT, **grpc)),
        Model.model_validate(model_resource("echo", triton_url, "echo", **grpc)),
        Model.model_validate(model_resource("fault", triton_url, "fault", **grpc)),
        Model.model_validate(model_resource("all-minilm-l6-v2", triton_url, "all-minilm-l6-v2", interface="embedding",
                                            display_name="all-MiniLM-L6-v2", promptFamily=None)),
    ]


def llmapi_models(triton_url: str, grpc_address: str | None = None) -> list[Model]:
    """A Model routing to the llmapi SmolLM2, published with interface llmapi."""
    return [Model.model_validate(model_resource(LLMAPI_MODEL, triton_url, LLMAPI_MODEL, interface="llmapi",
                                                display_name="SmolLM2-135M-Instruct-Q4_1 (llmapi)",
                                                chatTemplate=bundled_template(), engine=CONTEXT,
                                                grpc_address=grpc_address))]


def make_gateway(models: list[Model], **settings) -> GatewayServer:
    settings.setdefault("health_probe_interval_s", 0.2)
    config = Settings(model_source="local", **settings)
    app = create_app(config, lambda s, triton: LocalModelSource(models, triton.model_ready, s.health_probe_interval_s))
    return GatewayServer(app)
