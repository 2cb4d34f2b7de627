"""Integration tier: the real `tritonserver` binary serving the real bundled SmolLM2 GGUF (plus the
echo model and a fault-injecting test model), and the gateway on a real uvicorn."""

from __future__ import annotations

from typing import Iterator

import httpx
import pytest

from support import GatewayServer
from support.stack import make_gateway, repository_models


@pytest.fixture(scope="session")
def gateway(triton) -> Iterator[GatewayServer]:
    with make_gateway(repository_models(triton.url)) as server:
        yield server


@pytest.fixture
def client(gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=120) as c:
        yield c
