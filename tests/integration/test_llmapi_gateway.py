"""The gateway in front of a model speaking TensorRT-LLM's llmapi interface (`sampling_param_*`,
`streaming`, cumulative `text_output`, `finish_reason`, no token counts) — the CPU runtime serving
that interface in the real Triton — next to the same SmolLM2 behind the ensemble interface.
Greedy decoding makes the two comparable word for word."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from support.stack import LLMAPI_MODEL

pytestmark = pytest.mark.triton

CHAT = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture
def sdk(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, timeout=120)


def sse_data(response: httpx.Response) -> list[str]:
    return [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]


def test_chat_answers_like_the_ensemble_model(sdk):
    ensemble = sdk.chat.completions.create(model="smollm2", messages=CHAT, max_tokens=24, temperature=0)
    llmapi = sdk.chat.completions.create(model=LLMAPI_MODEL, messages=CHAT, max_tokens=24, temperature=0)
    assert llmapi.choices[0].message.content == ensemble.choices[0].message.content
    assert llmapi.choices[0].finish_reason == ensemble.choices[0].finish_reason
    # llmapi reports no token counts: usage is unknown, not invented.
    assert ensemble.usage.completion_tokens >= 1 and llmapi.usage is None


def test_streamed_deltas_are_new_text_only(sdk):
    """llmapi sends all text so far in every response; clients must get each piece once."""
    whole = sdk.completions.create(model=LLMAPI_MODEL, prompt="1, 2, 3, 4,", max_tokens=16, temperature=0)
    pieces, finish = [], None
    for chunk in sdk.completions.create(model=LLMAPI_MODEL, prompt="1, 2, 3, 4,", max_tokens=16, temperature=0,
                                        stream=True, stream_options={"include_usage": True}):
        for choice in chunk.choices:
            pieces.append(choice.text)
            finish = choice.finish_reason or finish
        if not chunk.choices:
            assert chunk.usage is None
    assert len([p for p in pieces if p]) > 3  # really streamed, token by token
    assert "".join(pieces) == whole.choices[0].text
    assert finish == "length" == whole.choices[0].finish_reason


def test_length_and_stop_come_from_the_models_finish_reason(sdk):
    cut = sdk.completions.create(model=LLMAPI_MODEL, prompt="1, 2, 3, 4,", max_tokens=3, temperature=0)
    assert cut.choices[0].finish_reason == "length"
    stopped = sdk.completions.create(model=LLMAPI_MODEL, prompt="1, 2, 3, 4,", max_tokens=40, temperature=0,
                                     stop=["8"])
    assert stopped.choices[0].finish_reason == "stop"
    assert "8" not in stopped.choices[0].text and "7" in stopped.choices[0].text


def test_seed_makes_sampling_repeatable(sdk):
    ask = dict(model=LLMAPI_MODEL, messages=CHAT, max_tokens=16, temperature=1.0, top_p=0.95, seed=7)
    assert sdk.chat.completions.create(**ask).choices[0].message.content == \
        sdk.chat.completions.create(**ask).choices[0].message.content


def test_generate_api_streams_and_reports_unknown_token_counts(stream_client):
    body = {"model_id": LLMAPI_MODEL, "inputs": "Name three colours.", "parameters": {"max_new_tokens": 12,
                                                                                    "do_sample": False}}
    plain = stream_client.post("/v1/generate", json=body).json()
    assert plain["generated_text"] and plain["tokens"] is None
    with stream_client.stream("POST", "/v1/generate", json={**body, "stream": True}) as response:
        events = [json.loads(e) for e in sse_data(response)]
    assert events[-1]["finished"] is True and events[-1]["tokens"] is None
    assert "".join(e["token"] for e in events) == events[-1]["generated_text"] == plain["generated_text"]


def test_tgi_route_serves_the_llmapi_model(stream_client):
    answer = stream_client.post("/generate", json={"inputs": "1, 2, 3, 4,", "model": LLMAPI_MODEL,
                                                   "parameters": {"max_new_tokens": 5, "details": True}})
    assert answer.status_code == 200, answer.text
    details = answer.json()["details"]
    assert details["finish_reason"] == "length" and details["generated_tokens"] is None


def test_repetition_penalty_is_refused_not_dropped(stream_client):
    """llmapi has no repetition-penalty input: a clear 400 rather than a silently ignored setting."""
    body = {"model_id": LLMAPI_MODEL, "inputs": "Hi", "parameters": {"max_new_tokens": 4, "repetition_penalty": 1.3}}
    answer = stream_client.post("/v1/generate", json=body)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "UNSUPPORTED_PARAMETER"
    assert answer.json()["error"]["param"] == "repetition_penalty"
    same_for_ensemble = stream_client.post("/v1/generate", json={**body, "model_id": "smollm2"})
    assert same_for_ensemble.status_code == 200


def test_disconnect_cancels_generation(stream_client):
    """SmolLM2 decodes one sequence at a time: the request queued behind an abandoned long stream
    is quick only if Triton stopped generating it."""
    counting = {"model": LLMAPI_MODEL, "prompt": "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,", "temperature": 0}
    with stream_client.stream("POST", "/v1/completions", json={**counting, "max_tokens": 3000,
                                                                "stream": True}) as response:
        for i, _ in enumerate(response.iter_lines()):
            if i >= 10:
                break
    started = time.monotonic()
    answer = stream_client.post("/v1/completions", json={**counting, "max_tokens": 5}).json()
    assert answer["choices"][0]["finish_reason"] == "length"
    assert time.monotonic() - started < 5  # the abandoned stream would have needed ~30 s more
