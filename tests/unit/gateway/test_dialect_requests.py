"""OpenAI, TGI and seed 001 requests → the backend-neutral request, and their refusals."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pydantic import ValidationError

from conch_api import TensorInterface
from conch_gateway.errors import ConchError
from conch_gateway.prompts import PromptFormat
from conch_gateway.protocol.api_v1 import ApiV1GenerateRequest
from conch_gateway.protocol.openai import ChatCompletionRequest, CompletionRequest
from conch_gateway.protocol.tgi import TGIParameters
from conch_gateway.registry.base import ModelRegistry, ServedModel
from conch_gateway.services import api_v1, openai, tgi

MODEL = ServedModel(id="m", name="M", endpoint="http://t:8000", grpc_address=None, triton_model="m",
                    interface=TensorInterface.ENSEMBLE, prompt=PromptFormat.for_model("chatml", None),
                    routable=True, health="healthy")
EMBEDDER = ServedModel(id="e", name="E", endpoint="http://t:8000", grpc_address=None, triton_model="e",
                       interface=TensorInterface.EMBEDDING, prompt=PromptFormat.for_model(None, None),
                       routable=True, health="healthy", supports=("embeddings",))


def chat(**fields) -> ChatCompletionRequest:
    return ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}], **fields)


def test_openai_defaults_and_greedy():
    request = openai.generation_request(chat(), "P", MODEL, None)
    assert (request.max_tokens, request.temperature, request.greedy) == (openai.DEFAULT_MAX_TOKENS, 1.0, False)
    greedy = openai.generation_request(chat(temperature=0), "P", MODEL, 7)
    assert greedy.greedy and greedy.temperature is None and greedy.max_tokens == 7


def test_each_choice_gets_its_own_seed():
    seeds = [openai.generation_request(chat(seed=5, n=3), "P", MODEL, None, i).seed for i in range(3)]
    assert seeds == [5, 6, 7]


def test_developer_role_and_text_parts():
    request = ChatCompletionRequest(model="m", messages=[
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}])
    assert openai.chat_messages(request) == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "ab"}]


@pytest.mark.parametrize("fields", [
    {"logprobs": True}, {"top_logprobs": 2}, {"logit_bias": {"1": 2.0}}, {"response_format": {"type": "json_object"}},
    {"tools": [{"type": "function"}]}, {"tool_choice": "required"},
])
def test_unsupported_chat_parameters_are_refused(fields):
    with pytest.raises(ConchError) as raised:
        openai.check_chat(chat(**fields))
    assert raised.value.status == 400 and raised.value.code == "UNSUPPORTED_PARAMETER"


@pytest.mark.parametrize("fields", [
    {"messages": [{"role": "tool", "content": "x"}]}, {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
    {"temperature": 2.5}, {"n": 9}, {"stop": ["x"] * 17}, {"unknown_field": 1}, {"max_tokens": "ten"},
])
def test_malformed_chat_requests_fail_validation(fields):
    with pytest.raises(ValidationError):
        ChatCompletionRequest(**{"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields})


def test_completion_refusals():
    for fields in ({"prompt": [1, 2, 3]}, {"prompt": "x", "suffix": "y"}, {"prompt": "x", "logprobs": 1},
                   {"prompt": "x", "best_of": 3}):
        with pytest.raises(ConchError):
            openai.check_completion(CompletionRequest(model="m", **fields))


def test_usage_counts_each_prompt_once():
    from conch_gateway.backends.base import GenerationResult

    results = [GenerationResult("a", 2, 10, "stop"), GenerationResult("b", 3, 10, "stop")]
    assert openai.usage(results).model_dump() == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    assert openai.usage(results, prompts=2).prompt_tokens == 20


def test_tgi_is_greedy_unless_sampling_is_asked_for():
    assert tgi.generation_request(TGIParameters(), "P", MODEL).greedy
    assert not tgi.generation_request(TGIParameters(temperature=0.8), "P", MODEL).greedy
    assert not tgi.generation_request(TGIParameters(do_sample=True), "P", MODEL).greedy
    assert tgi.generation_request(TGIParameters(), "P", MODEL).max_tokens == 100


@pytest.mark.parametrize("fields", [{"best_of": 2}, {"decoder_input_details": True}, {"top_n_tokens": 3},
                                    {"truncate": 10}, {"typical_p": 0.5}, {"watermark": True}, {"grammar": {}},
                                    {"adapter_id": "x"}])
def test_tgi_refuses_what_it_cannot_do_with_422(fields):
    with pytest.raises(ConchError) as raised:
        tgi.check(TGIParameters(**fields))
    assert raised.value.status == 422


def test_tgi_finish_reasons():
    assert tgi.finish_reason("length", False) == "length"
    assert tgi.finish_reason("stop", True) == "stop_sequence"
    assert tgi.finish_reason("stop", False) == "eos_token"


def test_seed_001_prompt_is_the_user_turn_of_the_chat_template():
    request = api_v1.generation_request(ApiV1GenerateRequest(prompt="hello", temperature=0), MODEL)
    assert request.prompt == "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    assert request.greedy and request.max_tokens == 512


def test_default_model_resolution():
    registry = ModelRegistry()
    registry.replace_all([MODEL, EMBEDDER])
    assert registry.resolve_default(None, None).id == "m"  # the only text model
    with pytest.raises(ConchError) as raised:
        registry.resolve_default("e", None)
    assert raised.value.code == "UNSUPPORTED_TASK"
    with pytest.raises(ConchError) as raised:
        registry.resolve("m", embeddings=True)
    assert raised.value.code == "UNSUPPORTED_TASK"
    registry.upsert(replace(MODEL, id="m2"))
    with pytest.raises(ConchError) as raised:
        registry.resolve_default(None, None)
    assert raised.value.code == "MODEL_NOT_FOUND" and "m2" in raised.value.message
    assert registry.resolve_default(None, "m2").id == "m2"
