"""Seed 000 parameters → the backend-neutral request → tensor names of each interface."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from conch_api import TensorInterface
from conch_gateway.backends.base import BackendFailed
from conch_gateway.backends.codecs import CODECS
from conch_gateway.prompts import PromptFormat
from conch_gateway.protocol.generate import GenerateParameters, GenerateRequest
from conch_gateway.registry.base import ServedModel
from conch_gateway.services.generation import TimeLimit, classify_failure, cut_at_stop
from conch_gateway.services.generate import to_generation_request

MODEL = ServedModel(id="m", name="M", endpoint="http://t:8000", grpc_address="t:8001", triton_model="m",
                    interface=TensorInterface.ENSEMBLE, prompt=PromptFormat.for_model("chatml", None),
                    routable=True, health="healthy")


def test_seed_000_defaults():
    params = GenerateRequest(model_id="m", inputs="x").parameters
    assert (params.max_new_tokens, params.temperature, params.top_p, params.do_sample, params.stop) == (128, 0.7, 0.9, True, [])


def test_sampling_maps_to_ensemble_tensors():
    request = to_generation_request(GenerateParameters(temperature=0.5, top_p=0.8, stop=["\n\n"], seed=3), "P", MODEL)
    body = CODECS["ensemble"].request_body(request, stream=False)
    assert body == {
        "text_input": "P", "max_tokens": 128, "stream": False, "exclude_input_in_output": True,
        "return_num_input_tokens": True, "return_num_output_tokens": True,
        "temperature": 0.5, "top_p": 0.8, "seed": 3, "stop_words": ["\n\n", "<|im_end|>"],
    }


@pytest.mark.parametrize("params", [GenerateParameters(do_sample=False, temperature=1.5),
                                    GenerateParameters(temperature=0.0)])
def test_greedy_is_top_k_1(params):
    body = CODECS["ensemble"].request_body(to_generation_request(params, "P", MODEL), stream=False)
    assert body["top_k"] == 1 and "temperature" not in body and "top_p" not in body


def test_llmapi_names():
    request = to_generation_request(GenerateParameters(max_new_tokens=9, temperature=0.3, stop=["x"]), "P", MODEL)
    body = CODECS["llmapi"].request_body(request, stream=True)
    assert body["sampling_param_max_tokens"] == 9 and body["streaming"] is True
    assert body["sampling_param_temperature"] == 0.3 and body["sampling_param_stop"] == ["x", "<|im_end|>"]
    assert "max_tokens" not in body and "stream" not in body


def test_codec_reads_unwrapped_and_list_outputs():
    codec = CODECS["ensemble"]
    assert codec.text({"text_output": "a"}) == "a" and codec.text({"text_output": ["b"]}) == "b"
    assert codec.output_tokens({"num_output_tokens": [7]}) == 7 and codec.output_tokens({}) is None


@pytest.mark.parametrize("change", [{"temperature": 2.01}, {"top_p": 0}, {"max_new_tokens": 0},
                                    {"max_new_tokens": 5000}, {"temperature": float("nan")}, {"do_sample": 1}])
def test_parameter_bounds(change):
    with pytest.raises(ValidationError):
        GenerateParameters(**change)


def test_integers_are_accepted_for_floats():
    assert GenerateParameters(temperature=1).temperature == 1.0


def test_time_limit_grows_with_tokens():
    limit = TimeLimit(base_s=60, per_token_s=0.5)
    assert limit.for_tokens(128) == 64 and limit.for_tokens(10) == 60 and limit.for_tokens(1000) == 500


def test_cut_at_stop():
    assert cut_at_stop("one, two, three", ("two", "three")) == ("one, ", True)
    assert cut_at_stop("one", ("x",)) == ("one", False)


@pytest.mark.parametrize("status, message, code", [
    (400, "the prompt has 9000 tokens; the context window is 2048 tokens", "CONTEXT_LENGTH_EXCEEDED"),
    (400, "Prompt length (5000) exceeds maximum input length (4096)", "CONTEXT_LENGTH_EXCEEDED"),
    (400, "Request for unknown model: 'x' is not found", "DOWNSTREAM_REQUEST_FAILED"),
    (503, "Exceeds maximum queue size", "DOWNSTREAM_REQUEST_FAILED"),
    (400, "generation failed: CUDA error", "TRITON_SERVER_ERROR"),
    (500, "boom", "TRITON_SERVER_ERROR"),
    # a runtime refusing a value it was sent is the request's fault
    (400, "top_p must be in (0, 1], got 0.0", "INVALID_PARAMETER"),
    (400, "beam search is not supported by the llama-cpp runtime (beam_width must be 1)", "INVALID_PARAMETER"),
    (400, "generation failed: invalid state", "TRITON_SERVER_ERROR"),
    (500, "the engine must be rebuilt", "TRITON_SERVER_ERROR"),
    # a runtime that broke is not the request's fault, whatever words its message uses
    (400, "worker stopped: the llama-cpp worker died (IndexError('list index out of range')); the model must be "
          "reloaded", "DOWNSTREAM_REQUEST_FAILED"),
])
def test_triton_failures_are_classified(status, message, code):
    error = classify_failure("m", BackendFailed(status, message))
    assert error.code == code and message in error.message
