"""Seed 000's `/v1/generate` through the gateway to the real Triton and the real SmolLM2."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.triton

# Seed 000's four curl examples, with this deployment's model id (the bundled SmolLM2).
SEED_000_EXAMPLES = [
    {"model_id": "smollm2", "inputs": "请用中文介绍你自己",
     "parameters": {"max_new_tokens": 128, "temperature": 0.7, "top_p": 0.9}},
    {"model_id": "smollm2", "inputs": "牛顿三大定律是什么？", "scenario": "qa",
     "parameters": {"max_new_tokens": 200, "temperature": 0.5}},
    {"model_id": "smollm2", "inputs": "人工智能是计算机科学的一个分支，旨在创建能够执行通常需要人类智能的任务的系统……",
     "scenario": "summarize", "parameters": {"max_new_tokens": 100}},
    {"model_id": "smollm2", "inputs": "这个产品非常好，大家都很喜欢。", "scenario": "rewrite",
     "parameters": {"max_new_tokens": 64, "temperature": 0.9}},
]


@pytest.mark.parametrize("body", SEED_000_EXAMPLES, ids=["base", "qa", "summarize", "rewrite"])
def test_seed_000_examples(client: httpx.Client, body):
    response = client.post("/v1/generate", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == {"generated_text", "model", "tokens", "finish_reason"}
    assert answer["finish_reason"] == ("length" if answer["tokens"] == body["parameters"]["max_new_tokens"] else "stop")
    assert answer["model"] == "SmolLM2-135M-Instruct-Q4_1"
    assert answer["generated_text"].strip()
    assert 1 <= answer["tokens"] <= body["parameters"]["max_new_tokens"]
    assert "<|im_start|>" not in answer["generated_text"] and "<|im_end|>" not in answer["generated_text"]


def greedy(client: httpx.Client, inputs: str, **parameters) -> dict:
    body = {"model_id": "smollm2", "inputs": inputs, "parameters": {"do_sample": False, **parameters}}
    response = client.post("/v1/generate", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_greedy_is_deterministic(client):
    first = greedy(client, "Name three colors of the rainbow.", max_new_tokens=40)
    second = greedy(client, "Name three colors of the rainbow.", max_new_tokens=40)
    assert first == second


def test_same_seed_same_sample(client):
    body = {"model_id": "smollm2", "inputs": "Tell me a story about a cat.",
            "parameters": {"max_new_tokens": 30, "temperature": 1.2, "seed": 1234}}
    first, second = (client.post("/v1/generate", json=body).json() for _ in range(2))
    assert first["generated_text"] == second["generated_text"]


def test_stop_strings_end_the_text_and_are_not_returned(client):
    full = greedy(client, "What is the capital of France?", max_new_tokens=60)
    text = full["generated_text"]
    words = [w for w in text.replace(",", " ").split() if len(w) > 2]
    assert len(words) >= 3, text
    stop = words[2]
    cut = greedy(client, "What is the capital of France?", max_new_tokens=60, stop=[stop])
    assert stop not in cut["generated_text"]
    assert cut["generated_text"] == text[: text.index(stop)]
    assert cut["tokens"] < full["tokens"]


def test_max_new_tokens_bounds_generation(client):
    answer = greedy(client, "Write a long essay about the history of Rome.", max_new_tokens=5)
    assert answer["tokens"] == 5


def test_tokens_is_what_triton_counted(client, triton):
    """The gateway reports the backend's own count: ask Triton directly with the same prompt."""
    from conch_gateway.prompts import PromptFormat, scenario_messages
    from support.stack import bundled_template

    prompt = PromptFormat.for_model("chatml", bundled_template()).render(scenario_messages("qa", "What is water made of?"))
    direct = httpx.post(f"{triton.url}/v2/models/smollm2/generate", timeout=60, json={
        "text_input": prompt, "max_tokens": 50, "top_k": 1, "exclude_input_in_output": True,
        "return_num_output_tokens": True, "stop_words": ["<|im_end|>"],
    }).json()
    answer = client.post("/v1/generate", json={
        "model_id": "smollm2", "inputs": "What is water made of?", "scenario": "qa",
        "parameters": {"do_sample": False, "max_new_tokens": 50},
    }).json()
    assert answer["tokens"] == direct["num_output_tokens"]
    assert answer["generated_text"] == direct["text_output"]


def test_scenarios_inject_the_chat_template(client):
    """Users never type <|im_start|>: a plain question gets an answer, not a continuation."""
    answer = greedy(client, "What is the capital of France?", max_new_tokens=20)
    assert "Paris" in answer["generated_text"]
