"""The llama-cpp runtime inside the real Triton, through Triton's own endpoints: the TensorRT-LLM
ensemble tensor contract, decoupled streaming, and the sampling controls."""

from __future__ import annotations

import httpx
import orjson
import pytest

pytestmark = pytest.mark.triton

PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"


def generate(triton, **body) -> dict:
    response = httpx.post(f"{triton.url}/v2/models/smollm2/generate", json={"text_input": PROMPT, **body}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def generate_stream(triton, **body) -> list[dict]:
    with httpx.stream("POST", f"{triton.url}/v2/models/smollm2/generate_stream",
                      json={"text_input": PROMPT, "stream": True, **body}, timeout=60) as response:
        assert response.status_code == 200
        return [orjson.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]


def test_model_metadata_is_the_ensemble_contract(triton):
    metadata = httpx.get(f"{triton.url}/v2/models/smollm2").json()
    inputs = {t["name"]: t["datatype"] for t in metadata["inputs"]}
    assert inputs["text_input"] == "BYTES" and inputs["max_tokens"] == "INT32"
    assert inputs["seed"] == "UINT64" and inputs["min_tokens"] == "INT32" and inputs["stream"] == "BOOL"
    assert "random_seed" not in inputs and "min_length" not in inputs
    assert {t["name"] for t in metadata["outputs"]} >= {"text_output", "num_output_tokens"}
    config = httpx.get(f"{triton.url}/v2/models/smollm2/config").json()
    assert config["model_transaction_policy"]["decoupled"] is True


def test_non_streaming_is_exactly_one_response_echoing_the_input(triton):
    answer = generate(triton, max_tokens=16, top_k=1, return_num_output_tokens=True)
    assert answer["text_output"].startswith(PROMPT)  # TensorRT-LLM's default: input included
    assert "Paris" in answer["text_output"][len(PROMPT):]
    assert 1 <= answer["num_output_tokens"] <= 16


def test_streaming_sends_one_response_per_token(triton):
    events = generate_stream(triton, max_tokens=12, top_k=1, return_num_output_tokens=True)
    whole = generate(triton, max_tokens=12, top_k=1, exclude_input_in_output=True, return_num_output_tokens=True)
    assert len(events) > 3
    assert "".join(e["text_output"] for e in events) == whole["text_output"]
    assert sum(e["num_output_tokens"] for e in events) == whole["num_output_tokens"]
    assert all(e["num_output_tokens"] <= 1 for e in events[:-1])


def test_max_tokens_is_exact(triton):
    answer = generate(triton, text_input="<|im_start|>user\nWrite a long poem about the sea.<|im_end|>\n<|im_start|>assistant\n",
                      max_tokens=7, top_k=1, return_num_output_tokens=True)
    assert answer["num_output_tokens"] == 7


def test_stop_words_end_generation_and_are_not_returned(triton):
    answer = generate(triton, max_tokens=30, top_k=1, exclude_input_in_output=True, stop_words=["France"])
    assert answer["text_output"] == "The capital of "


def test_bad_words_are_never_generated(triton):
    plain = generate(triton, max_tokens=20, top_k=1, exclude_input_in_output=True)["text_output"]
    assert "Paris" in plain
    banned = generate(triton, max_tokens=20, top_k=1, exclude_input_in_output=True, bad_words=["Paris", " Paris"])
    assert "Paris" not in banned["text_output"]


def test_min_tokens_holds_back_the_end(triton):
    short = generate(triton, max_tokens=60, top_k=1, return_num_output_tokens=True)["num_output_tokens"]
    longer = generate(triton, max_tokens=60, top_k=1, min_tokens=short + 5, return_num_output_tokens=True)
    assert longer["num_output_tokens"] >= short + 5


def test_seed_makes_sampling_reproducible(triton):
    sample = dict(max_tokens=24, temperature=1.3, top_p=0.95, exclude_input_in_output=True)
    first = generate(triton, seed=42, **sample)["text_output"]
    assert generate(triton, seed=42, **sample)["text_output"] == first
    others = {generate(triton, seed=s, **sample)["text_output"] for s in (1, 2, 3)}
    assert others != {first}


@pytest.fixture(scope="module")
def vocab():
    import llama_cpp
    from llama_cpp._utils import suppress_stdout_stderr

    from conch_engines import bundled

    with suppress_stdout_stderr(disable=False):
        return llama_cpp.Llama(str(bundled.smollm2().gguf_path), vocab_only=True, verbose=False)


def test_end_id_stops_at_that_token(triton, vocab):
    first, second = vocab.tokenize(b"The capital", add_bos=False)[:2]
    answer = generate(triton, max_tokens=20, top_k=1, exclude_input_in_output=True, end_id=second,
                      return_num_output_tokens=True)
    assert answer["text_output"] == vocab.detokenize([first]).decode()
    assert answer["num_output_tokens"] == 1


@pytest.mark.parametrize("body, message", [
    ({"beam_width": 2}, "beam"),
    ({"num_return_sequences": 3}, "one sequence"),
    ({"top_p": 0.0}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"),
])
def test_unsupported_or_invalid_inputs_are_clear_errors(triton, body, message):
    response = httpx.post(f"{triton.url}/v2/models/smollm2/generate",
                          json={"text_input": PROMPT, "max_tokens": 8, **body}, timeout=60)
    assert response.status_code == 400
    assert message in response.json()["error"]
