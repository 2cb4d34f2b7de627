"""Seed 002's service the way its README starts and calls it: `conch serve` (its start_api.sh) as a
real process with the bundled SmolLM2, then the README's curl examples run by the real `curl`, as
written — only the address (http://127.0.0.1:5000) is the test server's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from support import free_port, free_port_block
from support.seed002 import SEED_CHAT, SEED_HEALTH, SEED_RESET, SEED_STATUS, curl

pytestmark = pytest.mark.triton

CONCH = str(Path(sys.executable).with_name("conch"))


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[str]:
    """`conch serve --model smollm2 --port N --device cpu`, its state and Triton's ports its own."""
    workdir = tmp_path_factory.mktemp("serve")
    port = free_port()
    env = {**os.environ, "CONCH_STATE_DIR": str(workdir / "state"), "TRITON_HTTP_PORT": str(free_port_block())}
    log = open(workdir / "serve.log", "w")
    server = subprocess.Popen([CONCH, "serve", "--model", "smollm2", "--port", str(port), "--device", "cpu"],
                              stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while not _healthy(url):
            assert server.poll() is None, (workdir / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "conch serve did not become healthy: " + \
                (workdir / "serve.log").read_text()[-3000:]
            time.sleep(0.5)
        yield url
        # Ctrl-C, as a person at the terminal would: both Triton and the gateway stop, exit 0
        os.killpg(server.pid, signal.SIGINT)
        assert server.wait(60) == 0, (workdir / "serve.log").read_text()[-3000:]
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(30)
        log.close()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_seed_002_curl_examples_against_conch_serve(served):
    assert curl(SEED_HEALTH, served)["status"] == "healthy", "GET /health"
    curl(SEED_RESET, served)  # the default session may hold an earlier run's turns
    answer = curl(SEED_CHAT, served)
    assert set(answer) == {"message", "response", "status"}, answer
    assert answer["message"] == "你好！" and answer["status"] == "success"
    assert isinstance(answer["response"], str) and answer["response"].strip()
    assert "<|im_end|>" not in answer["response"]  # the model's control tokens never reach the caller

    status = curl(SEED_STATUS, served)
    assert set(status) == {"model_name", "device", "conversation_length", "memory_allocated"}
    assert status["conversation_length"] == 2 and isinstance(status["memory_allocated"], int)
    # the gateway names where the model runs (Triton owns the device: docs/sessions.md)
    assert "smollm2" in status["model_name"].lower() and status["device"]

    # the conversation is remembered: a second message makes it 4, as in the README's example answer
    # (a short one: the example's 512 tokens once is enough of SmolLM2 on a CPU)
    second = httpx.post(f"{served}/chat", json={"message": "And you?", "max_tokens": 8}, timeout=300)
    assert second.status_code == 200 and second.json()["status"] == "success", second.text
    assert curl(SEED_STATUS, served)["conversation_length"] == 4
    curl(SEED_RESET, served)
    assert curl(SEED_STATUS, served)["conversation_length"] == 0


def test_the_cli_and_the_management_api_work_against_conch_serve(served):
    """`conch serve` is the embedded stack, management API included (on a laptop, without keys)."""
    env = {**os.environ, "CONCH_URL": served, "CONCH_API_KEY": ""}
    done = subprocess.run([CONCH, "-o", "json", "generate", "Hello", "--max-tokens", "4"], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0 and json.loads(done.stdout)["model"] == "smollm2", done.stderr
    managed = subprocess.run([CONCH, "-o", "json", "models", "get", "smollm2"], capture_output=True, text=True,
                             timeout=60, env=env)
    assert managed.returncode == 0 and json.loads(managed.stdout)["status"] == "running", managed.stderr


def test_a_device_that_cannot_be_served_says_why(tmp_path):
    env = {**os.environ, "CONCH_STATE_DIR": str(tmp_path / "state"), "TRITON_HTTP_PORT": str(free_port_block())}
    refused = subprocess.run([CONCH, "serve", "--model", "smollm2", "--port", str(free_port()), "--device", "cuda:0"],
                             capture_output=True, text=True, timeout=120, env=env)
    assert refused.returncode == 2
    assert "--device cuda:0" in refused.stdout and "use --device cpu" in refused.stdout
