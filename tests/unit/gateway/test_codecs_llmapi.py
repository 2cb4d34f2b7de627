"""The llmapi codec against TensorRT-LLM 1.2.1's llmapi model: every input it sends is one the
model declares, with the declared datatype, and its answers are read the way that model writes
them (cumulative text, finish reason as a string, no token counts)."""

from __future__ import annotations

from conch_engines.contract import LLMAPI_INPUTS
from conch_gateway.backends.base import GenerationRequest
from conch_gateway.backends.codecs import CODECS, DATATYPES
from conch_gateway.prompts import PromptFormat

LLMAPI = CODECS["llmapi"]
DECLARED = {spec.name: spec.data_type.removeprefix("TYPE_").replace("STRING", "BYTES") for spec in LLMAPI_INPUTS}


def test_every_input_sent_is_declared_with_its_datatype():
    sampled = GenerationRequest(prompt="P", max_tokens=9, temperature=0.5, top_p=0.8, top_k=40, seed=3,
                                stop=("x",), stop_tokens=("<|im_end|>",), presence_penalty=0.1, frequency_penalty=0.2)
    greedy = GenerationRequest(prompt="P", max_tokens=9, greedy=True)
    for request in (sampled, greedy):
        for stream in (False, True):
            body = LLMAPI.request_body(request, stream=stream)
            assert {name: DATATYPES[name] for name in body} == {name: DECLARED[name] for name in body}


def test_request_names_and_values():
    body = LLMAPI.request_body(GenerationRequest(prompt="P", max_tokens=9, temperature=0.5, top_p=0.8, seed=3,
                                                 stop=("END",), stop_tokens=("<|im_end|>",)), stream=True)
    assert body == {
        "text_input": "P", "sampling_param_max_tokens": 9, "streaming": True,
        "sampling_param_exclude_input_from_output": True,  # the Triton model's default is to echo the prompt
        "return_finish_reason": True,
        "sampling_param_seed": 3, "sampling_param_temperature": 0.5, "sampling_param_top_p": 0.8,
        "sampling_param_stop": ["END", "<|im_end|>"],
    }


def test_greedy_is_top_k_1():
    body = LLMAPI.request_body(GenerationRequest(prompt="P", max_tokens=9, greedy=True, temperature=0.7), stream=False)
    assert body["sampling_param_top_k"] == 1 and "sampling_param_temperature" not in body


def test_the_model_familys_end_tokens_are_sent_as_stop_words_to_both_interfaces():
    llama3 = PromptFormat.for_model("llama3", None)
    request = GenerationRequest(prompt="P", max_tokens=9, stop_tokens=llama3.stop_tokens)
    assert LLMAPI.request_body(request, stream=False)["sampling_param_stop"] == ["<|eot_id|>", "<|eom_id|>"]
    assert CODECS["ensemble"].request_body(request, stream=False)["stop_words"] == ["<|eot_id|>", "<|eom_id|>"]


def test_finish_reason_is_read_from_the_answer():
    assert [LLMAPI.finish_reason({"finish_reason": r}) for r in ("stop", "length", "timeout", "cancelled")] == \
        ["stop", "length", "length", "length"]
    assert LLMAPI.finish_reason({"finish_reason": "None"}) is None  # str(None) on responses before the last
    assert LLMAPI.finish_reason({"finish_reason": ["stop"]}) == "stop"
    assert CODECS["ensemble"].finish_reason({"text_output": "x"}) is None  # the ensemble never says


def test_llmapi_reports_no_token_counts():
    answer = {"text_output": "Paris.", "finish_reason": "stop"}
    assert LLMAPI.output_tokens(answer) is None and LLMAPI.input_tokens(answer) is None


def test_cumulative_streamed_text_becomes_deltas_per_stream():
    first, second = LLMAPI.text_deltas(), LLMAPI.text_deltas()
    assert [first({"text_output": t}) for t in ("The", "The cap", "The capital")] == ["The", " cap", "ital"]
    assert second({"text_output": "The"}) == "The"  # each stream keeps its own position
    # TensorRT-LLM trims a matched stop string from the last response only: nothing more to add.
    assert first({"text_output": "The cap"}) == ""


def test_ensemble_streamed_text_is_already_deltas():
    deltas = CODECS["ensemble"].text_deltas()
    assert [deltas({"text_output": t}) for t in ("The", " cap")] == ["The", " cap"]
