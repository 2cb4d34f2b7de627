"""Starting the wheel's `tritonserver`: a failure says why, in Triton's own words."""

from __future__ import annotations

import socket

import pytest

from conch_engines import repository
from conch_engines.triton_server import TritonPorts, TritonServer, TritonStartError
from support import free_port_block

pytestmark = pytest.mark.triton


def test_a_model_that_cannot_load_shows_tritons_log(tmp_path):
    files = repository.llama_cpp_files("broken", "/nonexistent/model.gguf")
    server = TritonServer(repository.write_repository(tmp_path / "repo", files), tmp_path,
                          TritonPorts.from_http(free_port_block()))
    with pytest.raises(TritonStartError) as error:
        server.start(timeout=120)
    message = str(error.value)
    assert "tritonserver exited" in message
    assert "failed to load 'broken'" in message or "/nonexistent/model.gguf" in message
    assert not server.is_running()


def test_a_busy_port_is_reported_before_starting(tmp_path):
    base = free_port_block()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", base + 1))
        busy.listen()
        server = TritonServer(tmp_path, tmp_path, TritonPorts.from_http(base))
        with pytest.raises(TritonStartError, match=f"port {base + 1} .* already in use"):
            server.start()
