"""The `/api/v1` API (seed 001), driven the way the seed's own examples drive it."""

from __future__ import annotations

import json
import time

import pytest
import requests

pytestmark = pytest.mark.triton


def test_seed_001_python_example(gateway):
    # The seed's example, with only its URL pointed at the test gateway.
    def generate_text(prompt, model="default"):
        url = f"{gateway.url}/api/v1/generate"
        payload = {"prompt": prompt, "model": model, "max_tokens": 512, "temperature": 0.7}
        response = requests.post(url, json=payload)
        return response.json()

    result = generate_text("Write a two-line poem about spring.", model="smollm2")
    assert result["text"].strip()
    usage = result["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert 0 < result["latency"] < 120
    # The seed's own default argument, "default", is the gateway's default model.
    assert generate_text("Say hi.")["model"] == "smollm2"
    # A name that is no model: the error says where the served ones are listed.
    error = generate_text("hi", model="no-such-model")["error"]
    assert error["code"] == "MODEL_NOT_FOUND" and "/v1/models" in error["message"]


def test_seed_001_javascript_stream_logic(gateway):
    """The seed's JavaScript client, step for step: read the body chunk by chunk, strip "data: ",
    JSON-parse the chunk, print the token. It works only if every event is its own chunk."""
    response = requests.post(f"{gateway.url}/api/v1/generate/stream", stream=True,
                             headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
                             data=json.dumps({"prompt": "Say hello to the world.", "max_tokens": 20}))
    tokens, finished = [], False
    for value in response.raw.stream(amt=65536, decode_content=True):  # reader.read()
        chunk = value.decode()
        if chunk.startswith(":"):
            continue  # keep-alive comment, only sent after 15 s of silence
        data = json.loads(chunk.replace("data: ", "", 1))
        tokens.append(data["token"])
        finished = data["finished"]
    assert finished and len(tokens) >= 2 and "".join(tokens).strip()


def test_generate_with_stream_true_streams(client):
    with client.stream("POST", "/api/v1/generate", json={"prompt": "Hi", "max_tokens": 5, "stream": True}) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1]["finished"] is True and events[-1]["usage"]["completion_tokens"] == 5
    assert all(not e["finished"] for e in events[:-1])


def test_batch_runs_concurrently_in_order_with_per_item_errors(client):
    items = [
        {"prompt": "Say one word.", "max_tokens": 3, "model": "smollm2"},
        {"prompt": "", "max_tokens": 3},
        {"prompt": "hello batch", "model": "echo", "max_tokens": 8},
        {"prompt": "x", "model": "no-such-model"},
        {"prompt": "SLEEP: 1.5", "model": "fault"},
        {"prompt": "SLEEP: 1.5", "model": "echo"},
    ]
    started = time.monotonic()
    results = client.post("/api/v1/batch/generate", json={"requests": items}).json()["results"]
    elapsed = time.monotonic() - started
    assert len(results) == len(items)
    assert results[0]["text"] and results[0]["usage"]["completion_tokens"] <= 3
    assert results[1]["error"]["code"] == "INVALID_REQUEST"
    assert "hello batch" in results[2]["text"]
    assert results[3]["error"]["code"] == "MODEL_NOT_FOUND"
    assert results[4]["text"] == "slept"
    assert "SLEEP" in results[5]["text"]
    assert elapsed < 10  # the sleeping item did not hold the others back


def test_batch_limits(client):
    too_many = client.post("/api/v1/batch/generate", json={"requests": [{"prompt": "x"}] * 65})
    assert too_many.status_code == 422 and too_many.json()["error"]["code"] == "INVALID_REQUEST"
    empty = client.post("/api/v1/batch/generate", json={"requests": []})
    assert empty.status_code == 422


def test_models_in_seed_001_shape(client):
    models = {m["name"]: m for m in client.get("/api/v1/models").json()["models"]}
    assert models["smollm2"]["loaded"] is True and models["smollm2"]["format"] == "gguf"


def test_bad_input_is_422_in_the_shared_envelope(client):
    response = client.post("/api/v1/generate", json={"prompt": "hi", "temperature": 5})
    assert response.status_code == 422
    body = response.json()
    assert body["error"]["code"] == "INVALID_REQUEST" and body["error"]["param"] == "temperature"
