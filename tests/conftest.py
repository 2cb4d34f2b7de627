"""Fixtures shared by every test tier."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from conch_engines.triton_server import TritonPorts, TritonServer
from support import REPO_ROOT, free_port_block
from support.stack import write_test_repository


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def triton(tmp_path_factory) -> Iterator[TritonServer]:
    """One real Triton for the session, serving the bundled SmolLM2, the echo model and the fault
    model (loading the model takes seconds, not worth repeating)."""
    workdir = tmp_path_factory.mktemp("triton")
    server = TritonServer(write_test_repository(workdir / "repository"), workdir,
                          TritonPorts.from_http(free_port_block()))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def bundled_chat_template() -> str:
    from support.stack import bundled_template

    return bundled_template()
