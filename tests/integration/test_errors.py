"""Every error of `/v1/generate`, provoked for real, in the one envelope."""

from __future__ import annotations

import time

import httpx
import pytest

from conch_api import Model
from conch_engines import repository
from conch_engines.triton_server import TritonPorts, TritonServer
from support import free_port_block, model_resource

from support.stack import make_gateway, repository_models

pytestmark = pytest.mark.triton


def assert_envelope(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_code"] == code
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert set(body["error"]) == {"code", "message", "type", "param", "details"}
    assert body["path"] == response.request.url.path
    assert body["timestamp"].endswith("Z")
    return body


def test_unknown_model(client):
    body = assert_envelope(client.post("/v1/generate", json={"model_id": "qwen2", "inputs": "hi"}), 400, "MODEL_NOT_FOUND")
    assert body["error"]["param"] == "model_id"
    assert "qwen2" in body["error"]["message"]


def test_unknown_scenario(client):
    response = client.post("/v1/generate", json={"model_id": "smollm2", "inputs": "hi", "scenario": "poem"})
    body = assert_envelope(response, 400, "PROMPT_FORMAT_FAILED")
    assert "base, qa, summarize, rewrite" in body["error"]["message"]


def test_template_that_fails_to_render(triton):
    broken = Model.model_validate(model_resource("broken", triton.url, "echo",
                                                 chatTemplate="{{ messages[0]['content'] | no_such_filter }}"))
    raising = Model.model_validate(model_resource("raising", triton.url, "echo",
                                                  chatTemplate="{{ raise_exception('roles must alternate') }}"))
    escaping = Model.model_validate(model_resource("escaping", triton.url, "echo",
                                                   chatTemplate="{{ ''.__class__.__mro__[1].__subclasses__() }}"))
    with make_gateway([broken, raising, escaping]) as gateway:
        for name, needle in (("broken", "no_such_filter"), ("raising", "roles must alternate"), ("escaping", "")):
            response = httpx.post(f"{gateway.url}/v1/generate", json={"model_id": name, "inputs": "hi"})
            body = assert_envelope(response, 400, "PROMPT_FORMAT_FAILED")
            assert needle in body["error"]["message"]


INVALID_BODIES = {
    "temperature above 2": {"parameters": {"temperature": 2.5}},
    "temperature below 0": {"parameters": {"temperature": -0.1}},
    "temperature as text": {"parameters": {"temperature": "hot"}},
    "top_p zero": {"parameters": {"top_p": 0}},
    "top_p above 1": {"parameters": {"top_p": 1.5}},
    "max_new_tokens zero": {"parameters": {"max_new_tokens": 0}},
    "max_new_tokens negative": {"parameters": {"max_new_tokens": -5}},
    "max_new_tokens huge": {"parameters": {"max_new_tokens": 10_000_000}},
    "max_new_tokens float": {"parameters": {"max_new_tokens": 12.5}},
    "max_new_tokens as text": {"parameters": {"max_new_tokens": "12"}},
    "do_sample as text": {"parameters": {"do_sample": "yes"}},
    "stop as a string": {"parameters": {"stop": "\n"}},
    "stop with empty string": {"parameters": {"stop": [""]}},
    "unknown parameter": {"parameters": {"max_length": 12}},
    "parameters not an object": {"parameters": [1, 2]},
    "empty inputs": {"inputs": ""},
    "blank inputs": {"inputs": "   \n"},
    "inputs as list": {"inputs": ["a", "b"]},
    "inputs null": {"inputs": None},
    "model_id as number": {"model_id": 7},
    "unknown top-level field": {"prompt": "hi"},
}


@pytest.mark.parametrize("change", INVALID_BODIES.values(), ids=INVALID_BODIES.keys())
def test_invalid_requests(client, change):
    body = {"model_id": "smollm2", "inputs": "hello", **change}
    response = assert_envelope(client.post("/v1/generate", json=body), 422, "INVALID_REQUEST")
    assert response["error"]["type"] == "invalid_request_error"
    assert response["error"]["details"]


@pytest.mark.parametrize("missing", ["model_id", "inputs"])
def test_missing_fields(client, missing):
    body = {"model_id": "smollm2", "inputs": "hello"}
    del body[missing]
    response = assert_envelope(client.post("/v1/generate", json=body), 422, "INVALID_REQUEST")
    assert response["error"]["param"] == missing


def test_malformed_json(client):
    response = client.post("/v1/generate", content=b'{"model_id": "smollm2", "inputs": ', headers={"Content-Type": "application/json"})
    body = assert_envelope(response, 400, "INVALID_JSON")
    assert "character 34" in body["error"]["message"]


def test_body_that_is_not_json(client):
    response = client.post("/v1/generate", content=b"model_id=smollm2", headers={"Content-Type": "text/plain"})
    assert_envelope(response, 415, "UNSUPPORTED_MEDIA_TYPE")


def test_triton_error_carries_tritons_message(client):
    response = client.post("/v1/generate", json={"model_id": "fault", "inputs": "FAIL: the GPU caught fire"})
    body = assert_envelope(response, 500, "TRITON_SERVER_ERROR")
    assert "the GPU caught fire" in body["error"]["message"]
    assert "Traceback" not in response.text


@pytest.mark.parametrize("path, body", [
    ("/api/v1/generate", {"model": "fault", "prompt": "FAIL: the GPU caught fire", "stream": True}),
    ("/api/v1/generate/stream", {"model": "fault", "prompt": "FAIL: the GPU caught fire"}),
    ("/v1/generate", {"model_id": "fault", "inputs": "FAIL: the GPU caught fire", "stream": True}),
    ("/v1/completions", {"model": "fault", "prompt": "FAIL: the GPU caught fire", "stream": True}),
    ("/generate_stream", {"model": "fault", "inputs": "FAIL: the GPU caught fire"}),
])
def test_a_stream_failing_before_its_first_token_is_a_plain_error(client, path, body):
    """Before any token the route can still answer with an HTTP error, and its message is the
    model's, not Triton's SSE framing of it (`data: {"error": …}`)."""
    response = client.post(path, json=body)
    assert response.status_code in (424, 500), response.text  # TGI answers generation failures with 424
    message = response.json()["error"]["message"]
    assert "the GPU caught fire" in message and "data:" not in message and "{" not in message


def test_runtime_rejects_prompt_longer_than_context(client):
    response = client.post("/v1/generate", json={"model_id": "smollm2", "inputs": "word " * 5000})
    body = assert_envelope(response, 400, "CONTEXT_LENGTH_EXCEEDED")
    assert "context window" in body["error"]["message"]


def test_timeout_returns_504_promptly(triton):
    with make_gateway(repository_models(triton.url), inference_timeout_s=0.3,
                      inference_timeout_per_token_s=0) as gateway:
        started = time.monotonic()
        response = httpx.post(f"{gateway.url}/v1/generate", timeout=30, json={
            "model_id": "fault", "inputs": "SLEEP: 2"})
        assert_envelope(response, 504, "INFERENCE_TIMEOUT")
        assert time.monotonic() - started < 1.5


def test_real_model_times_out_too(triton):
    with make_gateway(repository_models(triton.url), inference_timeout_s=0.05,
                      inference_timeout_per_token_s=0) as gateway:
        response = httpx.post(f"{gateway.url}/v1/generate", timeout=30, json={
            "model_id": "smollm2", "inputs": "Write a long essay about the sea.",
            # Small: Triton cannot cancel a one-shot HTTP request, so the model finishes it after the
            # 504 and the tests after this one wait for that.
            "parameters": {"max_new_tokens": 60}})
        assert_envelope(response, 504, "INFERENCE_TIMEOUT")


def test_dead_triton_gives_503_and_unhealthy(tmp_path):
    repo = repository.write_repository(tmp_path / "repository", repository.echo_files("echo"))
    server = TritonServer(repo, tmp_path, TritonPorts.from_http(free_port_block()))
    server.start()
    try:
        echo = Model.model_validate(model_resource("echo", server.url, "echo"))
        with make_gateway([echo]) as gateway:
            ok = httpx.post(f"{gateway.url}/v1/generate", json={"model_id": "echo", "inputs": "hi"})
            assert ok.status_code == 200
            assert httpx.get(f"{gateway.url}/health").status_code == 200

            server.kill()
            dead = httpx.post(f"{gateway.url}/v1/generate", json={"model_id": "echo", "inputs": "hi"})
            body = assert_envelope(dead, 503, "DOWNSTREAM_REQUEST_FAILED")
            assert body["error"]["type"] == "service_unavailable_error"

            deadline = time.monotonic() + 10
            while httpx.get(f"{gateway.url}/health").status_code != 503:
                assert time.monotonic() < deadline, "health never noticed Triton died"
                time.sleep(0.1)
            health = httpx.get(f"{gateway.url}/health").json()
            assert health["status"] == "unhealthy" and health["models"] == {"echo": "unhealthy"}
            full = httpx.get(f"{gateway.url}/health/full")
            assert full.status_code == 503 and full.json()["details"] == {"echo": "unhealthy"}
    finally:
        server.stop()


def test_unknown_route_uses_the_envelope(client):
    assert_envelope(client.get("/v1/nothing-here"), 404, "NOT_FOUND")
    assert_envelope(client.get("/v1/generate"), 405, "METHOD_NOT_ALLOWED")
