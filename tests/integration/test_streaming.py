"""The streaming core against the real Triton: every dialect flushes tokens as they come, ends
with its own error event when generation fails midway, and a client that goes away cancels the
request inside Triton — over both stream transports to Triton (HTTP generate_stream, gRPC)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from support.stack import make_gateway, repository_models

pytestmark = pytest.mark.triton


def sse_data(response: httpx.Response) -> list[str]:
    return [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]


def post_stream(client: httpx.Client, path: str, body: dict) -> tuple[int, list[str]]:
    with client.stream("POST", path, json=body) as response:
        if response.status_code != 200:
            response.read()
            return response.status_code, [response.text]
        assert response.headers["content-type"].startswith("text/event-stream")
        return 200, sse_data(response)


# What each dialect's stream looks like -----------------------------------------------------------

def test_generate_api_streams_tokens_then_the_whole_answer(stream_client):
    status, events = post_stream(stream_client, "/v1/generate", {
        "model_id": "smollm2", "inputs": "Name three colours.", "stream": True,
        "parameters": {"max_new_tokens": 12, "do_sample": False}})
    assert status == 200
    parsed = [json.loads(e) for e in events]
    assert all(not e["finished"] for e in parsed[:-1]) and parsed[-1]["finished"] is True
    last = parsed[-1]
    assert last["generated_text"] == "".join(e["token"] for e in parsed)
    assert last["model"] == "SmolLM2-135M-Instruct-Q4_1" and 1 <= last["tokens"] <= 12
    # Same greedy request without streaming: same text, same count.
    plain = stream_client.post("/v1/generate", json={"model_id": "smollm2", "inputs": "Name three colours.",
                                              "parameters": {"max_new_tokens": 12, "do_sample": False}}).json()
    assert plain["generated_text"] == last["generated_text"] and plain["tokens"] == last["tokens"]


def test_tokens_are_flushed_as_they_are_generated(client):
    """Each token leaves the gateway as its own network write, spread over the generation time
    (nothing is buffered until the end)."""
    arrivals = []
    with client.stream("POST", "/api/v1/generate/stream",
                       json={"prompt": "Write a long story about a cat.", "max_tokens": 40, "temperature": 0}) as r:
        for chunk in r.iter_raw():
            if chunk.startswith(b":"):
                continue  # a keep-alive comment, sent when the machine is slow
            arrivals.append(time.perf_counter())
            assert chunk.count(b"data: ") == 1, chunk  # one event per write, as seed 001's JS client assumes
    assert len(arrivals) >= 20
    assert arrivals[-1] - arrivals[0] > 0.1  # 40 tokens of a real model take time; they were not sent in one burst


def test_stop_string_split_across_tokens_never_leaks(client):
    # The echo model streams the prompt back word by word; "STOP" arrives as its own token.
    status, events = post_stream(client, "/v1/completions", {
        "model": "echo", "prompt": "alpha beta STOP gamma", "max_tokens": 50, "stream": True, "stop": ["a STOP"]})
    assert status == 200
    text = "".join(json.loads(e)["choices"][0]["text"] for e in events if e != "[DONE]")
    assert text == "alpha bet"
    finishes = [json.loads(e)["choices"][0]["finish_reason"] for e in events if e != "[DONE]"]
    assert finishes[-1] == "stop"


# Failures -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path, body, expected_status", [
    ("/v1/chat/completions", {"model": "fault", "messages": [{"role": "user", "content": "FAIL: boom"}], "stream": True}, 500),
    ("/v1/completions", {"model": "fault", "prompt": "FAIL: boom", "stream": True}, 500),
    ("/v1/generate", {"model_id": "fault", "inputs": "FAIL: boom", "stream": True}, 500),
    ("/api/v1/generate/stream", {"model": "fault", "prompt": "FAIL: boom"}, 500),
    # TGI answers a failed generation with 424 (Failed Dependency); its clients expect that.
    ("/generate_stream", {"model": "fault", "inputs": "FAIL: boom"}, 424),
])
def test_failure_before_the_first_token_is_a_plain_http_error(stream_client, path, body, expected_status):
    status, (text,) = post_stream(stream_client, path, body)
    assert status == expected_status
    error = json.loads(text)
    assert error["error"]["code"] == "TRITON_SERVER_ERROR" and "boom" in error["error"]["message"]


@pytest.mark.parametrize("path, body, error_of", [
    ("/v1/chat/completions", {"model": "fault", "messages": [{"role": "user", "content": "FAIL_MIDSTREAM"}],
                              "stream": True}, lambda e: e["error"]["code"]),
    ("/v1/completions", {"model": "fault", "prompt": "FAIL_MIDSTREAM", "stream": True}, lambda e: e["error"]["code"]),
    ("/v1/generate", {"model_id": "fault", "inputs": "FAIL_MIDSTREAM", "stream": True}, lambda e: e["error"]["code"]),
    ("/api/v1/generate/stream", {"model": "fault", "prompt": "FAIL_MIDSTREAM"}, lambda e: e["error"]["code"]),
    ("/generate_stream", {"model": "fault", "inputs": "FAIL_MIDSTREAM"}, lambda e: e["error_code"]),
])
def test_failure_midstream_ends_with_the_dialects_error_event(stream_client, path, body, error_of):
    status, events = post_stream(stream_client, path, body)
    assert status == 200
    assert "one" in events[0] or "one" in events[1]  # the text before the failure was delivered
    last = json.loads(events[-1])
    assert error_of(last) == "TRITON_SERVER_ERROR"
    assert "[DONE]" not in events  # an OpenAI stream that failed is not reported as complete


def test_unknown_model_and_bad_input_fail_before_streaming(client):
    status, (text,) = post_stream(client, "/v1/chat/completions",
                                  {"model": "nope", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    assert status == 404 and json.loads(text)["error"]["code"] == "MODEL_NOT_FOUND"
    status, (text,) = post_stream(client, "/generate_stream", {"inputs": "hi", "parameters": {"max_new_tokens": 0}})
    assert status == 422 and json.loads(text)["error"]["code"] == "INVALID_REQUEST"


def test_time_limit_ends_a_stream_with_a_timeout_event(triton):
    models = repository_models(triton.url, f"127.0.0.1:{triton.ports.grpc}")
    with make_gateway(models, inference_timeout_s=1.0, inference_timeout_per_token_s=0.0) as gateway, \
            httpx.Client(base_url=gateway.url, timeout=30) as client:
        started = time.monotonic()
        status, (text,) = post_stream(client, "/v1/completions",
                                      {"model": "fault", "prompt": "SLEEP: 20", "stream": True, "max_tokens": 5})
        assert time.monotonic() - started < 10
        assert status == 504 and json.loads(text)["error"]["code"] == "INFERENCE_TIMEOUT"


# Cancellation ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", lambda p: {"model": "fault", "messages": [{"role": "user", "content": f"TICK: {p}"}],
                                        "stream": True, "max_tokens": 4000}),
    ("/generate_stream", lambda p: {"model": "fault", "inputs": f"TICK: {p}", "parameters": {"max_new_tokens": 4000}}),
    ("/api/v1/generate/stream", lambda p: {"model": "fault", "prompt": f"TICK: {p}", "max_tokens": 4000}),
])
def test_client_disconnect_cancels_the_request_in_triton(stream_client, tmp_path, path, body):
    outcome_file = tmp_path / "outcome"
    with stream_client.stream("POST", path, json=body(outcome_file)) as response:
        assert response.status_code == 200
        for i, _ in enumerate(response.iter_lines()):
            if i >= 6:
                break  # leaving the block closes the connection mid-stream
    outcome = _wait_for(outcome_file, seconds=10)
    state, ticks = outcome.split()
    assert state == "cancelled", outcome
    assert int(ticks) < 200  # stopped within a moment of the disconnect, not at the 30 s limit


def test_disconnect_frees_the_real_model_at_once(stream_client):
    """SmolLM2 runs one sequence at a time, so a request queued behind an abandoned 3000-token
    stream finishes quickly only if Triton really stopped generating it."""
    counting = {"model": "smollm2", "prompt": "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,", "temperature": 0}
    control = stream_client.post("/v1/completions", json={**counting, "max_tokens": 200}).json()
    assert control["choices"][0]["finish_reason"] == "length"  # this prompt counts on; it does not stop early
    abandoned = {**counting, "max_tokens": 3000, "stream": True}
    with stream_client.stream("POST", "/v1/completions", json=abandoned) as response:
        for i, _ in enumerate(response.iter_lines()):
            if i >= 10:
                break
    started = time.monotonic()
    answer = stream_client.post("/v1/completions", json={**counting, "max_tokens": 5}).json()
    assert answer["usage"]["completion_tokens"] == 5
    assert time.monotonic() - started < 5  # the abandoned stream would have needed ~30 s more


def test_grpc_transport_falls_back_to_http_without_a_grpc_address(triton):
    with make_gateway(repository_models(triton.url), stream_transport="grpc") as gateway, httpx.Client(base_url=gateway.url, timeout=60) as client:
        status, events = post_stream(client, "/v1/completions",
                                     {"model": "echo", "prompt": "one two three", "stream": True, "max_tokens": 10})
        assert status == 200
        assert "".join(json.loads(e)["choices"][0]["text"] for e in events if e != "[DONE]") == "one two three"


def _wait_for(path: Path, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"the model never reported how the request ended ({path})")
