"""`make up MODEL=<a local GGUF>` serves that file under an id derived from its name, and the
OpenAI client gets an answer from it; a bad spec fails at once with one line, no traceback."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from openai import OpenAI

from conch_engines import bundled
from support import REPO_ROOT, free_port, free_port_block

pytestmark = pytest.mark.triton


def test_make_up_serves_a_local_gguf(tmp_path):
    gguf = tmp_path / "My-Tiny-Chat.Q4_1.gguf"
    shutil.copyfile(bundled.smollm2().gguf_path, gguf)
    port, triton_port = free_port(), free_port_block()
    env = dict(os.environ, TRITON_HTTP_PORT=str(triton_port), CONCH_STATE_DIR=str(tmp_path / "state"))
    process = subprocess.Popen(["make", "--no-print-directory", "up", f"MODEL={gguf}", f"PORT={port}", "DEVICE=cpu"],
                               cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while not any("Gateway:" in line for line in lines):
            assert process.poll() is None and time.monotonic() < deadline, "".join(lines)
            lines.append(process.stdout.readline())
        output = "".join(lines)
        assert "model id: my-tiny-chat.q4_1" in output, output
        assert "TEST model" not in output  # only the bundled model is announced as a test model
        assert "harmless" in output
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused")
        assert "my-tiny-chat.q4_1" in [m.id for m in client.models.list().data]
        answer = client.chat.completions.create(model="my-tiny-chat.q4_1", max_tokens=8,
                                                messages=[{"role": "user", "content": "Say hello."}])
        assert answer.choices[0].message.content.strip()
        assert answer.model == "my-tiny-chat.q4_1"
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(60)


@pytest.mark.parametrize("args, message", [
    (["--model", "/nonexistent/x.gguf"], "model file not found: /nonexistent/x.gguf"),
    (["--device", "cuda:0"], "use --device cpu"),
])
def test_up_refuses_with_one_line(tmp_path, args, message):
    env = dict(os.environ, CONCH_STATE_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "conch_engines", "up", "--port", str(free_port()), *args],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stdout and "Traceback" not in result.stdout + result.stderr
