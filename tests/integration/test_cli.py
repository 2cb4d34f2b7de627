"""The `conch` CLI against the real gateway + Triton + SmolLM2: script commands, their exit codes, and the
interactive `conch chat` in a real pseudo-terminal (pexpect). The management commands:
test_management_clients.py; `conch serve`: test_seed002_curl.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest
import yaml

from support import default_interrupt, free_port

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
                         preexec_fn=default_interrupt,
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


def test_chat_model_picks_the_sessions_model(gateway):
    # `fault`, a test model in the real Triton, answers "ok" to ordinary text: the reply names the model
    chat = pexpect.spawn(CONCH, ["--url", gateway.url, "chat", "--model", "fault", "--session", "cli-model-test"],
                         encoding="utf-8", timeout=60, dimensions=(40, 200))
    try:
        chat.expect("you> ")
        chat.sendline("reset")
        chat.expect(r"\(conversation reset\)")
        chat.sendline("Hello there")
        chat.expect(r"bot> ok\s*\r?\n")
        chat.expect("you> ")
        chat.sendline("status")
        chat.expect(r"model_name: (\S+)")
        assert chat.match.group(1) == "fault"
        chat.expect("you> ")
        chat.sendeof()  # Ctrl-D at the prompt ends the program, like quit
        chat.expect(pexpect.EOF)
    finally:
        chat.close()
    assert chat.exitstatus == 0


# `conch serve` itself: tests/integration/test_seed002_curl.py starts it and calls it.
