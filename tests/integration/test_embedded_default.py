"""The README's first command: `python -m conch_engines up` (what `make up` runs) brings up Triton
and the gateway, answers the README's curl, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest

from support import REPO_ROOT, free_port, free_port_block

pytestmark = pytest.mark.triton


def readme_curl(port: int) -> list[str]:
    """The first curl command of the README, as argv, pointed at `port`."""
    readme = (REPO_ROOT / "README.md").read_text()
    command = re.search(r"```sh\n(curl http://127\.0\.0\.1:8000/v1/generate.*?)\n#", readme, re.S).group(1)
    command = command.replace("\\\n", " ")  # shell line continuations
    return [arg.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for arg in shlex.split(command)]


def readme_openai_example(port: int) -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    code = re.search(r"```python\n(from openai import OpenAI.*?)```", readme, re.S).group(1)
    return code.replace("127.0.0.1:8000", f"127.0.0.1:{port}") + "\nassert len(vectors.data[0].embedding) == 384\n"


def _stream_events(port: int, body: dict) -> list[str]:
    with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/completions", json=body, timeout=60) as response:
        return [line[6:] for line in response.iter_lines() if line.startswith("data: ")]


def test_up_serves_and_stops_cleanly(tmp_path):
    port, triton_port = free_port(), free_port_block()
    env = dict(os.environ, PORT=str(port), TRITON_HTTP_PORT=str(triton_port), CONCH_STATE_DIR=str(tmp_path))
    process = subprocess.Popen([sys.executable, "-m", "conch_engines", "up"], cwd=REPO_ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 120
        while not any("Gateway:" in line for line in lines):
            assert process.poll() is None and time.monotonic() < deadline, "".join(lines)
            lines.append(process.stdout.readline())
        output = "".join(lines)
        assert f"http://127.0.0.1:{triton_port}" in output and f"http://127.0.0.1:{port}" in output

        # The README's curl, as written apart from the port.
        answer = subprocess.run(readme_curl(port), capture_output=True, text=True, timeout=60, check=True)
        answer = json.loads(answer.stdout)
        assert "Paris" in answer["generated_text"] and answer["model"] == "SmolLM2-135M-Instruct-Q4_1"

        # The README's OpenAI example (streaming chat over gRPC, embeddings), as written apart from the port.
        example = subprocess.run([sys.executable, "-c", readme_openai_example(port)], capture_output=True, text=True,
                                 timeout=120)
        assert example.returncode == 0 and example.stdout.strip(), example.stderr

        # A second `make up` on the same ports refuses to start, and leaves the running one's files alone.
        models_file = tmp_path / "embedded" / "models.yaml"
        written = models_file.stat().st_mtime_ns
        second = subprocess.run([sys.executable, "-m", "conch_engines", "up"], cwd=REPO_ROOT, env=env,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 2 and "already in use" in second.stdout, second.stdout + second.stderr
        assert models_file.stat().st_mtime_ns == written

        # Ctrl-C with a stream in flight: a prompt stop, and the client is told (an error event, not a cut).
        children = psutil.Process(process.pid).children(recursive=True)
        assert any("tritonserver" in c.name() for c in children)
        with ThreadPoolExecutor(1) as pool:
            stream = pool.submit(_stream_events, port, {"model": "smollm2", "prompt": "1, 2, 3, 4, 5, 6, 7, 8,",
                                                       "max_tokens": 3000, "temperature": 0, "stream": True})
            time.sleep(1.5)
            stopped = time.monotonic()
            process.send_signal(signal.SIGINT)  # Ctrl-C
            assert process.wait(60) == 0
            assert time.monotonic() - stopped < 10
            events = stream.result(timeout=30)
        # Cut by the shutdown once the grace period ran out: an error event. Or, when the model
        # stopped by itself within the grace period, the whole answer: a finish_reason, then [DONE].
        if events[-1] == "[DONE]":
            assert json.loads(events[-2])["choices"][0]["finish_reason"] in ("stop", "length"), events[-3:]
        else:
            assert json.loads(events[-1])["error"]["code"] == "SHUTTING_DOWN", events[-3:]
        gone, alive = psutil.wait_procs(children, timeout=20)
        assert not alive, f"orphans left behind: {[p.cmdline() for p in alive]}"
        rest = process.stdout.read()
        assert "Traceback" not in rest and "CancelledError" not in rest, rest
    finally:
        if process.poll() is None:
            process.kill()
