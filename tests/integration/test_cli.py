"""The `conch` CLI against the real gateway + Triton + SmolLM2: script commands, their exit codes, the
interactive `conch chat` in a real pseudo-terminal (pexpect), and `conch serve` briefly for real."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pexpect
import pytest
import yaml

from support import free_port

pytestmark = pytest.mark.triton

CONCH = str(Path(sys.executable).with_name("conch"))


def conch(*args: str, url: str) -> subprocess.CompletedProcess:
    return subprocess.run([CONCH, "--url", url, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CONCH_API_KEY": ""})


def test_models_list_in_every_output_format(gateway):
    as_json = conch("-o", "json", "models", "list", url=gateway.url)
    assert as_json.returncode == 0, as_json.stderr
    assert "smollm2" in [m["id"] for m in json.loads(as_json.stdout)]
    as_yaml = conch("-o", "yaml", "models", "list", url=gateway.url)
    assert "smollm2" in [m["id"] for m in yaml.safe_load(as_yaml.stdout)]
    table = conch("models", "list", url=gateway.url)
    assert table.stdout.splitlines()[0].startswith("ID") and "smollm2" in table.stdout


def test_generate_and_its_exit_codes(gateway):
    done = conch("-o", "json", "generate", "Hello", "--model", "smollm2", "--max-tokens", "4", url=gateway.url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["model"] == "smollm2"
    streamed = conch("generate", "Hello", "--model", "smollm2", "--max-tokens", "4", "--stream", url=gateway.url)
    assert streamed.returncode == 0 and streamed.stdout.strip()
    refused = conch("generate", "Hello", "--model", "no-such-model", url=gateway.url)
    assert refused.returncode == 1 and "MODEL_NOT_FOUND" in refused.stderr
    unreachable = conch("models", "list", url=f"http://127.0.0.1:{free_port()}")
    assert unreachable.returncode == 3 and "cannot reach" in unreachable.stderr
    usage = conch("-o", "xml", "models", "list", url=gateway.url)
    assert usage.returncode == 2


def test_url_comes_from_conch_url(gateway):
    done = subprocess.run([CONCH, "-o", "json", "models", "list"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CONCH_URL": gateway.url})
    assert done.returncode == 0 and "smollm2" in done.stdout


def test_interactive_chat_in_a_real_terminal(gateway):
    chat = pexpect.spawn(CONCH, ["--url", gateway.url, "chat", "--session", "cli-test"], encoding="utf-8",
                         timeout=120, dimensions=(40, 200))
    try:
        chat.expect("you> ")
        chat.sendline("Hello! What is 2+2?")
        chat.expect("bot> ")
        chat.expect("you> ")
        chat.sendline("status")
        chat.expect(r"conversation_length: (\d+)")
        assert int(chat.match.group(1)) >= 1
        chat.expect("you> ")
        chat.sendline("reset")
        chat.expect(r"\(conversation reset\)")
        chat.sendline("status")
        chat.expect(r"conversation_length: 0")
        chat.expect("you> ")
        # Ctrl-C while the answer streams: the answer stops, the program stays.
        chat.sendline("Write a very long story about the sea, with many chapters.")
        chat.expect("bot> ")
        chat.expect(r"\S")  # the first token arrived
        chat.sendintr()
        chat.expect(r"\(cancelled\)")
        chat.expect("you> ")
        chat.sendline("quit")
        chat.expect(pexpect.EOF)
    finally:
        chat.close()
    assert chat.exitstatus == 0


def test_serve_starts_the_embedded_stack(tmp_path):
    port = free_port()
    server = subprocess.Popen([CONCH, "serve", "--model", "smollm2", "--port", str(port), "--device", "cpu"],
                              stdout=open(tmp_path / "serve.log", "w"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        else:
            pytest.fail("conch serve did not become healthy: " + (tmp_path / "serve.log").read_text()[-2000:])
        done = conch("generate", "Hello", "--max-tokens", "4", url=f"http://127.0.0.1:{port}")
        assert done.returncode == 0 and done.stdout.strip(), done.stderr
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
