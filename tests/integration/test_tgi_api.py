"""The Hugging Face TGI-compatible routes (seed 004), driven by `huggingface_hub.InferenceClient`
and by seed 004's own request examples, against the real Triton."""

from __future__ import annotations

import json

import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.errors import ValidationError

pytestmark = pytest.mark.triton

PROMPT = "The capital of France is"


@pytest.fixture
def hf(gateway) -> InferenceClient:
    return InferenceClient(base_url=gateway.url, timeout=120)


def test_text_generation(hf, client):
    text = hf.text_generation(PROMPT, max_new_tokens=8)
    assert "Paris" in text
    # TGI's defaults are greedy: the same request gives the same text.
    assert client.post("/generate", json={"inputs": PROMPT, "parameters": {"max_new_tokens": 8}}).json() == {
        "generated_text": text, "details": None}


def test_text_generation_with_details(hf):
    output = hf.text_generation(PROMPT, max_new_tokens=6, details=True, seed=3)
    assert "Paris" in output.generated_text
    assert output.details.finish_reason == "length" and output.details.generated_tokens == 6
    assert output.details.seed == 3


def test_text_generation_stream(hf):
    plain = hf.text_generation(PROMPT, max_new_tokens=10)
    tokens = list(hf.text_generation(PROMPT, max_new_tokens=10, stream=True))
    assert len(tokens) >= 5 and "".join(tokens) == plain


def test_text_generation_stream_with_details(hf):
    plain = hf.text_generation(PROMPT, max_new_tokens=10)
    events = list(hf.text_generation(PROMPT, max_new_tokens=10, stream=True, details=True))
    assert all(e.generated_text is None and e.details is None for e in events[:-1])
    last = events[-1]
    assert last.generated_text == plain
    assert last.details.finish_reason == "length" and last.details.generated_tokens == 10


def test_stop_sequence_and_full_text(hf):
    output = hf.text_generation("1, 2, 3, 4,", max_new_tokens=20, stop=[" 7"], details=True, return_full_text=True)
    assert output.generated_text.startswith("1, 2, 3, 4,") and " 7" not in output.generated_text
    assert " 6" in output.generated_text
    # Not "length": generation stopped early. (The CPU runtime drops the stop string itself, so the
    # gateway cannot tell it from an end token and says "eos_token"; with TensorRT-LLM, which returns
    # the stop string, the gateway cuts it and says "stop_sequence" — see test_api_mapping.py.)
    assert output.details.finish_reason in ("eos_token", "stop_sequence")
    assert output.details.generated_tokens < 20


def test_sampling_is_reproducible_with_a_seed(hf):
    first = hf.text_generation(PROMPT, max_new_tokens=12, do_sample=True, temperature=1.2, seed=42)
    second = hf.text_generation(PROMPT, max_new_tokens=12, do_sample=True, temperature=1.2, seed=42)
    assert first == second


def test_unsupported_parameters_are_a_validation_error(hf):
    with pytest.raises(ValidationError, match="decoder_input_details"):
        hf.text_generation(PROMPT, max_new_tokens=4, details=True, decoder_input_details=True)
    with pytest.raises(ValidationError, match="best_of"):
        hf.text_generation(PROMPT, max_new_tokens=4, best_of=2)


@pytest.mark.parametrize("path", ["/", "/invocations"])
def test_compat_routes_dispatch_on_stream(client, path):
    body = {"inputs": PROMPT, "parameters": {"max_new_tokens": 6}}
    plain = client.post(path, json=body)
    # Like TGI (to match api-inference), a list of one GenerateResponse; POST /generate stays an object.
    assert plain.status_code == 200 and isinstance(plain.json(), list) and len(plain.json()) == 1
    (answer,) = plain.json()
    assert "Paris" in answer["generated_text"]
    with client.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")]
    assert events[-1]["generated_text"] == answer["generated_text"]


def test_seed_004_request_example(client):
    # Seed 004's /generate example, as written.
    answer = client.post("/generate", json={"inputs": "Hello, world!",
                                            "parameters": {"max_new_tokens": 20, "return_full_text": True}})
    assert answer.status_code == 200
    assert answer.json()["generated_text"].startswith("Hello, world!")


def test_model_override_and_default(client):
    answer = client.post("/generate", json={"inputs": "ping pong", "model": "echo", "parameters": {"max_new_tokens": 5}})
    assert answer.json()["generated_text"] == "ping pong"
    missing = client.post("/generate", json={"inputs": "x", "model": "nope"})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "MODEL_NOT_FOUND"


def test_info_health_ping_docs(client):
    info = client.get("/info").json()
    assert info["model_id"] == "smollm2" and info["model_device_type"] == "cpu"
    assert info["model_pipeline_tag"] == "text-generation" and info["max_best_of"] == 1
    for path in ("/health", "/ping", "/"):
        assert client.get(path).status_code == 200
    assert client.get("/docs").status_code == 200
    spec = client.get("/api-doc/openapi.json").json()
    assert {"/generate", "/generate_stream", "/invocations", "/info"} <= set(spec["paths"])


def test_validation_errors_use_status_422(client):
    response = client.post("/generate", json={"inputs": "", "parameters": {}})
    assert response.status_code == 422
    assert response.json()["error_type"] == "validation"


def test_stop_sequence_reported_when_the_backend_returns_the_stop_string(client):
    # The echo model, like TensorRT-LLM, returns the stop string; the gateway cuts it and says why.
    answer = client.post("/generate", json={"inputs": "alpha beta gamma", "model": "echo",
                                            "parameters": {"stop": [" beta"], "details": True}}).json()
    assert answer["generated_text"] == "alpha"
    assert answer["details"]["finish_reason"] == "stop_sequence"
