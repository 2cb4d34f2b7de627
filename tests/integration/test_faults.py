"""Faults of the real parts around a request, each tried against the real Triton and gateway:
the client leaving a non-streaming request, the time limit, a failing sibling choice, Triton
killed or hung mid-stream, and the gateway stopped (SIGTERM) with requests in flight.

The fault model (triton_models/fault) reports how each "TICK: <file>" request ended: "cancelled
<ticks>" when Triton cancelled it, "finished <ticks>" when it ran its 30 s to the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import yaml

from conch_engines import repository
from conch_engines.triton_server import TritonPorts, TritonServer
from support import free_port, free_port_block
from support.stack import FAULT_MODEL, make_gateway, repository_models




def _outcome(path: Path, seconds: float = 10) -> tuple[str, int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            state, ticks = path.read_text().split()
            return state, int(ticks)
        time.sleep(0.05)
    raise AssertionError(f"the model never reported how the request ended ({path})")


def _events(response: httpx.Response) -> Iterator[str]:
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield line[len("data: "):]


# The client leaves, the time limit passes, a sibling fails ---------------------------------------

NON_STREAMING = {
    "/v1/completions": lambda p: {"model": "fault", "prompt": f"TICK: {p}", "max_tokens": 4000},
    "/v1/chat/completions": lambda p: {"model": "fault", "messages": [{"role": "user", "content": f"TICK: {p}"}],
                                       "max_tokens": 4000},
    "/v1/generate": lambda p: {"model_id": "fault", "inputs": f"TICK: {p}", "parameters": {"max_new_tokens": 4000}},
    "/generate": lambda p: {"model": "fault", "inputs": f"TICK: {p}", "parameters": {"max_new_tokens": 4000}},
    "/api/v1/generate": lambda p: {"model": "fault", "prompt": f"TICK: {p}", "max_tokens": 4000},
    "/chat": lambda p: {"model": "fault", "message": f"TICK: {p}", "max_tokens": 4000},  # seed 002's sessions
}


@pytest.mark.parametrize("path", list(NON_STREAMING))
def test_a_client_leaving_a_non_streaming_request_cancels_it_in_triton(gateway, tmp_path, path):
    outcome = tmp_path / "outcome"
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{gateway.url}{path}", json=NON_STREAMING[path](outcome), timeout=1.0)
    state, ticks = _outcome(outcome)
    assert state == "cancelled"
    assert ticks < 150  # within a moment of the disconnect (20 ms a tick), not at the model's 30 s end


def test_the_time_limit_cancels_a_non_streaming_request_in_triton(triton, tmp_path):
    outcome = tmp_path / "outcome"
    with make_gateway(repository_models(triton.url), inference_timeout_s=1.0, inference_timeout_per_token_s=0) as gw:
        answer = httpx.post(f"{gw.url}/v1/completions", json=NON_STREAMING["/v1/completions"](outcome), timeout=30)
    assert answer.status_code == 504 and answer.json()["error"]["code"] == "INFERENCE_TIMEOUT"
    state, ticks = _outcome(outcome)
    assert state == "cancelled" and ticks < 150


@pytest.mark.parametrize("stream", [False, True])
def test_a_failing_choice_cancels_its_siblings(gateway, tmp_path, stream):
    outcome = tmp_path / "outcome"
    failing = "FAIL_MIDSTREAM" if stream else "FAIL: the sibling broke"
    body = {"model": "fault", "prompt": [f"TICK: {outcome}", failing], "max_tokens": 4000, "stream": stream}
    with httpx.Client(timeout=60) as client, client.stream("POST", f"{gateway.url}/v1/completions", json=body) as answer:
        if stream:
            assert answer.status_code == 200
            last = json.loads(list(_events(answer))[-1])
            assert last["error"]["code"] == "TRITON_SERVER_ERROR"
        else:
            answer.read()
            assert answer.status_code == 500 and "the sibling broke" in answer.json()["error"]["message"]
    state, ticks = _outcome(outcome)
    assert state == "cancelled" and ticks < 150


# Triton killed or hung mid-stream --------------------------------------------------------------------

@pytest.fixture(scope="module")
def own_triton(tmp_path_factory) -> Iterator[TritonServer]:
    """A Triton of the fault model alone, for tests that kill or freeze it."""
    workdir = tmp_path_factory.mktemp("own-triton")
    root = workdir / "repository"
    repository.write_repository(root, {"fault/config.pbtxt": repository.render_config(repository.echo_config("fault"))})
    (root / "fault" / "1").mkdir(parents=True, exist_ok=True)
    shutil.copy(FAULT_MODEL / "1" / "model.py", root / "fault" / "1" / "model.py")
    server = TritonServer(root, workdir, TritonPorts.from_http(free_port_block()))
    server.start()
    yield server
    server.stop()


def _fault_model(triton: TritonServer, grpc: bool):
    models = [m for m in repository_models(triton.url, f"127.0.0.1:{triton.ports.grpc}" if grpc else None)
              if m.metadata.name == "fault"]
    return models


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_triton_killed_mid_stream_ends_it_with_an_error_event_then_serves_again(own_triton, tmp_path, transport):
    models = _fault_model(own_triton, transport == "grpc")
    body = {"model": "fault", "prompt": f"TICK: {tmp_path / 'outcome'}", "max_tokens": 4000, "stream": True}
    with make_gateway(models, stream_transport=transport, health_probe_interval_s=0.2) as gw, \
            httpx.Client(base_url=gw.url, timeout=30) as client:
        with client.stream("POST", "/v1/completions", json=body) as answer:
            events = _events(answer)
            for _ in range(5):
                next(events)
            killed = time.monotonic()
            own_triton.kill()
            rest = list(events)
        assert time.monotonic() - killed < 5, "the stream did not end promptly"
        last = json.loads(rest[-1])
        assert last["error"]["code"] in ("DOWNSTREAM_REQUEST_FAILED", "TRITON_SERVER_ERROR"), last
        assert "[DONE]" not in rest

        own_triton.start()
        deadline = time.monotonic() + 30
        while (answer := client.post("/v1/completions", json={"model": "fault", "prompt": "hi", "max_tokens": 2})
               ).status_code != 200:
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.2)
        assert answer.json()["choices"][0]["text"] == "ok"


def test_triton_hung_mid_stream_ends_it_at_the_idle_timeout(own_triton, tmp_path):
    models = _fault_model(own_triton, grpc=False)
    outcome = tmp_path / "outcome"
    body = {"model": "fault", "prompt": f"TICK: {outcome}", "max_tokens": 4000, "stream": True}
    with make_gateway(models, stream_idle_timeout_s=1.0) as gw, httpx.Client(base_url=gw.url, timeout=30) as client:
        try:
            with client.stream("POST", "/v1/completions", json=body) as answer:
                events = _events(answer)
                for _ in range(5):
                    next(events)
                os.kill(own_triton.pid, signal.SIGSTOP)
                frozen = time.monotonic()
                rest = list(events)
                waited = time.monotonic() - frozen
        finally:
            os.kill(own_triton.pid, signal.SIGCONT)
    assert 0.5 < waited < 5, waited
    last = json.loads(rest[-1])
    assert last["error"]["code"] == "INFERENCE_TIMEOUT" and "sent nothing for 1s" in last["error"]["message"]
    state, _ = _outcome(outcome)
    assert state == "cancelled"  # once Triton runs again, the abandoned request is cancelled, not run for 30 s


# The gateway stopped with requests in flight ------------------------------------------------------

@pytest.fixture
def gateway_process(triton, tmp_path) -> Iterator[tuple[subprocess.Popen, str]]:
    """`python -m conch_gateway`, as a pod runs it, with a grace period of 2 s."""
    models_file = tmp_path / "models.yaml"
    models_file.write_text(yaml.safe_dump_all([m.model_dump(mode="json", by_alias=True, exclude_none=True)
                                                for m in repository_models(triton.url)]))
    port = free_port()
    env = {**os.environ, "CONCH_MODEL_SOURCE": "local", "CONCH_LOCAL_MODELS_FILE": str(models_file),
           "CONCH_HOST": "127.0.0.1", "CONCH_PORT": str(port), "PORT": str(port), "CONCH_SHUTDOWN_GRACE_S": "2"}
    process = subprocess.Popen([sys.executable, "-m", "conch_gateway"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/health", timeout=1)
            break
        except httpx.TransportError:
            assert process.poll() is None and time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.1)
    yield process, url
    if process.poll() is None:
        process.kill()
        process.wait()


def test_sigterm_lets_short_requests_finish_and_ends_long_ones_cleanly(gateway_process, tmp_path):
    process, url = gateway_process
    outcome = tmp_path / "outcome"
    long_stream = {"model": "fault", "prompt": f"TICK: {outcome}", "max_tokens": 4000, "stream": True}
    short = {"model": "fault", "prompt": "SLEEP: 1", "max_tokens": 4}
    with httpx.Client(base_url=url, timeout=30) as client, client.stream("POST", "/v1/completions", json=long_stream) as stream:
        events = _events(stream)
        next(events)
        with httpx.Client(base_url=url, timeout=30) as other:
            with ThreadPoolExecutor(1) as pool:
                pending = pool.submit(other.post, "/v1/completions", json=short)
                time.sleep(0.3)  # the short request is in flight
                stopped = time.monotonic()
                process.send_signal(signal.SIGTERM)
                finished = pending.result()
        rest = list(events)
    assert finished.status_code == 200 and finished.json()["choices"][0]["text"] == "slept"
    last = json.loads(rest[-1])
    assert last["error"]["code"] == "SHUTTING_DOWN", last
    # uvicorn ends a graceful shutdown by re-raising the signal it got (-15), as a process should
    assert process.wait(15) in (0, -signal.SIGTERM)
    assert time.monotonic() - stopped < 8  # the 2 s grace, then a prompt exit
    log = process.stdout.read()
    assert "Traceback" not in log and "CancelledError" not in log, log
    state, _ = _outcome(outcome)
    assert state == "cancelled"
