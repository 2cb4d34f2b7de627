"""Integration tier: the real `tritonserver` binary serving the real bundled SmolLM2 GGUF (plus the
echo model and a fault-injecting test model), and the gateway on a real uvicorn."""

from __future__ import annotations

from typing import Iterator

import httpx
import pytest

from support import GatewayServer
from support.stack import llmapi_models, make_gateway, repository_models


def all_models(triton):
    """The test Triton's models, SmolLM2 once behind each TensorRT-LLM interface."""
    grpc = f"127.0.0.1:{triton.ports.grpc}"
    return repository_models(triton.url, grpc) + llmapi_models(triton.url, grpc)


@pytest.fixture(scope="session")
def gateway(triton) -> Iterator[GatewayServer]:
    models = all_models(triton)
    # CORS is closed by default (docs/auth.md); test_cors checks an origin the gateway was told to allow.
    with make_gateway(models, default_model="smollm2", cors_allow_origins=["http://localhost:3000"]) as server:
        yield server


@pytest.fixture
def client(gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=120) as c:
        yield c


@pytest.fixture(scope="session")
def grpc_gateway(triton) -> Iterator[GatewayServer]:
    """The same gateway, streaming from Triton over gRPC instead of HTTP."""
    models = all_models(triton)
    with make_gateway(models, default_model="smollm2", stream_transport="grpc") as server:
        yield server


@pytest.fixture(params=["http", "grpc"])
def stream_client(request) -> Iterator[httpx.Client]:
    """A client of the gateway for each stream transport to Triton."""
    server = request.getfixturevalue("gateway" if request.param == "http" else "grpc_gateway")
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c
