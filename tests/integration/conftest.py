"""Integration tier: the real `tritonserver` binary serving the real bundled SmolLM2 GGUF (plus the
echo model and a fault-injecting test model), and the gateway on a real uvicorn."""

from __future__ import annotations

from typing import Iterator

import httpx
import pytest

from conch_engines.triton_server import TritonPorts, TritonServer
from support import GatewayServer, free_port_block
from support.stack import make_gateway, repository_models, write_test_repository


@pytest.fixture(scope="session")
def triton(tmp_path_factory) -> Iterator[TritonServer]:
    """One real Triton for the session (loading the model takes seconds, not worth repeating)."""
    workdir = tmp_path_factory.mktemp("triton")
    server = TritonServer(write_test_repository(workdir / "repository"), workdir,
                          TritonPorts.from_http(free_port_block()))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gateway(triton) -> Iterator[GatewayServer]:
    with make_gateway(repository_models(triton.url)) as server:
        yield server


@pytest.fixture
def client(gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=120) as c:
        yield c
