"""The llama-cpp runtime serving TensorRT-LLM 1.2.1's `llmapi` interface inside the real Triton,
through Triton's own endpoints: the declared tensors, cumulative streamed text, finish and stop
reasons, and cancellation by request id."""

from __future__ import annotations

import threading

import httpx
import orjson
import pytest

from conch_engines import repository
from conch_engines.contract import LLMAPI_INPUTS, LLMAPI_OUTPUTS
from support.stack import LLMAPI_MODEL

pytestmark = pytest.mark.triton

PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
POEM = "<|im_start|>user\nWrite a long poem about the sea.<|im_end|>\n<|im_start|>assistant\n"
GREEDY = {"sampling_param_top_k": 1, "sampling_param_exclude_input_from_output": True, "return_finish_reason": True}


def url(triton, endpoint: str) -> str:
    return f"{triton.url}/v2/models/{LLMAPI_MODEL}/{endpoint}"


def generate(triton, **body) -> dict:
    response = httpx.post(url(triton, "generate"), json={"text_input": PROMPT, **body}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def generate_stream(triton, **body) -> list[dict]:
    with httpx.stream("POST", url(triton, "generate_stream"), json={"text_input": PROMPT, "streaming": True, **body},
                      timeout=60) as response:
        assert response.status_code == 200
        return [orjson.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]


def test_config_declares_the_llmapi_interface_of_tensorrt_llm_1_2_1(triton):
    served = httpx.get(url(triton, "config")).json()
    assert served["max_batch_size"] == 0 and served["model_transaction_policy"]["decoupled"] is True
    declared = {(t.name, t.data_type, tuple(t.dims)) for t in LLMAPI_INPUTS}
    assert {(t["name"], t["data_type"], tuple(int(d) for d in t["dims"])) for t in served["input"]} == declared
    assert {t["name"] for t in served["output"]} == {t.name for t in LLMAPI_OUTPUTS}
    assert [t["name"] for t in served["input"] if not t.get("optional")] == ["text_input"]
    generated = repository.parse_config(repository.llama_cpp_files("m", "/x.gguf", interface="llmapi")["m/config.pbtxt"])
    assert [t.name for t in generated.input] == [t["name"] for t in served["input"]]


def test_non_streaming_echoes_the_prompt_by_default_and_has_no_token_counts(triton):
    answer = generate(triton, sampling_param_max_tokens=16, sampling_param_top_k=1)
    assert answer["text_output"].startswith(PROMPT)  # the Triton model's default: exclude_input_from_output False
    assert "Paris" in answer["text_output"][len(PROMPT):]
    assert "finish_reason" not in answer  # only when asked for
    assert not any(name.startswith("num_") for name in answer)  # llmapi has no token-count outputs


def test_finish_reason_says_why_generation_ended(triton):
    assert generate(triton, sampling_param_max_tokens=40, **GREEDY)["finish_reason"] == "stop"
    cut = generate(triton, text_input=POEM, sampling_param_max_tokens=7, **GREEDY)
    assert cut["finish_reason"] == "length"
    default = generate(triton, text_input=POEM, **GREEDY)  # SamplingParams' default max_tokens is 32
    assert default["finish_reason"] == "length" and len(default["text_output"]) > len(cut["text_output"])


def test_streamed_text_is_cumulative(triton):
    events = generate_stream(triton, sampling_param_max_tokens=12, **GREEDY)
    whole = generate(triton, sampling_param_max_tokens=12, **GREEDY)
    texts = [e["text_output"] for e in events]
    assert len(events) > 3
    assert all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:]))
    assert texts[-1] == whole["text_output"]
    assert [e["finish_reason"] for e in events[:-1]] == ["None"] * (len(events) - 1)  # str(None) until done
    assert events[-1]["finish_reason"] == whole["finish_reason"]


def test_stop_strings_end_generation_and_are_not_returned(triton):
    answer = generate(triton, sampling_param_max_tokens=30, sampling_param_stop=["France"], return_stop_reason=True,
                      **GREEDY)
    assert answer["text_output"] == "The capital of "
    assert answer["finish_reason"] == "stop" and answer["stop_reason"] == "France"
    streamed = generate_stream(triton, sampling_param_max_tokens=30, sampling_param_stop=["France"], **GREEDY)
    assert streamed[-1]["text_output"] == "The capital of " and streamed[-1]["finish_reason"] == "stop"


def test_seed_makes_sampling_reproducible(triton):
    sample = dict(sampling_param_max_tokens=24, sampling_param_temperature=1.3, sampling_param_top_p=0.95,
                  sampling_param_exclude_input_from_output=True)
    first = generate(triton, sampling_param_seed=7, **sample)["text_output"]
    assert generate(triton, sampling_param_seed=7, **sample)["text_output"] == first
    others = {generate(triton, sampling_param_seed=seed, **sample)["text_output"] for seed in (8, 9, 10)}
    assert others != {first}


def test_stop_input_cancels_the_requests_with_that_id(triton):
    events: list[dict] = []

    def long_stream():
        body = {"id": "abandon-me", "text_input": POEM, "streaming": True, "sampling_param_max_tokens": 1500, **GREEDY}
        with httpx.stream("POST", url(triton, "generate_stream"), json=body, timeout=60) as response:
            events.extend(orjson.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: "))

    streaming = threading.Thread(target=long_stream)
    streaming.start()
    while not events and streaming.is_alive():
        threading.Event().wait(0.05)
    response = httpx.post(url(triton, "generate"), json={"id": "abandon-me", "text_input": "", "stop": True}, timeout=10)
    assert response.status_code == 400 and "cancelled" in response.text  # the real model answers CANCELLED too
    streaming.join(timeout=30)
    assert not streaming.is_alive()
    assert events[-1]["finish_reason"] == "cancelled" and len(events) < 500


def test_what_llama_cpp_cannot_do_is_refused(triton):
    for body in ({"sampling_param_best_of": 2}, {"return_cumulative_logprob": True}):
        response = httpx.post(url(triton, "generate"), json={"text_input": PROMPT, **body}, timeout=60)
        assert response.status_code != 200 and "llama-cpp" in response.json()["error"]
