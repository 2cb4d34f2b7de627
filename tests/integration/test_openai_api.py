"""The OpenAI-compatible API, driven by the official `openai` SDK (sync and async) and LangChain's
`ChatOpenAI`, against the real Triton and the bundled SmolLM2."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI

pytestmark = pytest.mark.triton

CHAT = [{"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def sdk(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, timeout=120)


def async_sdk(gateway) -> openai.AsyncOpenAI:
    # Made inside each test, on the test's own event loop.
    return openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, timeout=120)


# Chat completions ----------------------------------------------------------------------------------

def test_chat_completion(sdk):
    answer = sdk.chat.completions.create(model="smollm2", messages=CHAT, max_tokens=24, temperature=0)
    assert answer.object == "chat.completion" and answer.model == "smollm2"
    choice = answer.choices[0]
    assert choice.message.role == "assistant" and "Paris" in choice.message.content
    assert choice.finish_reason in ("stop", "length")
    usage = answer.usage
    assert usage.prompt_tokens > 10 and 1 <= usage.completion_tokens <= 24
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_chat_template_comes_from_the_gguf(sdk, bundled_chat_template):
    """The prompt is SmolLM2's own template from the GGUF metadata (which adds SmolLM's default
    system prompt when none is given), not a generic ChatML: the token count tells."""
    import llama_cpp
    from conch_engines import bundled
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    messages = [{"role": "user", "content": "Hello there"}]
    rendered = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(
        bundled_chat_template).render(messages=messages, add_generation_prompt=True)
    assert "SmolLM" in rendered
    vocab = llama_cpp.Llama(model_path=str(bundled.smollm2().gguf_path), vocab_only=True, verbose=False)
    expected = len(vocab.tokenize(rendered.encode(), add_bos=False, special=True))
    answer = sdk.chat.completions.create(model="smollm2", messages=messages, max_tokens=2)
    assert answer.usage.prompt_tokens == expected


def test_chat_stream_matches_the_non_streamed_answer(sdk):
    plain = sdk.chat.completions.create(model="smollm2", messages=CHAT, max_tokens=20, temperature=0)
    chunks = list(sdk.chat.completions.create(model="smollm2", messages=CHAT, max_tokens=20, temperature=0,
                                              stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [plain.choices[0].finish_reason]
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage.completion_tokens == plain.usage.completion_tokens
    assert usage_chunk.usage.prompt_tokens == plain.usage.prompt_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_stream_without_usage_has_no_usage_chunk(sdk):
    chunks = list(sdk.chat.completions.create(model="smollm2", messages=CHAT, max_tokens=5, stream=True))
    assert all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "length"


def test_wire_format_ends_with_done(gateway):
    with httpx.Client(base_url=gateway.url, timeout=60) as client, client.stream(
            "POST", "/v1/chat/completions",
            json={"model": "smollm2", "messages": CHAT, "max_tokens": 4, "stream": True}) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)
    assert json.loads(lines[0][6:])["choices"][0]["delta"] == {"role": "assistant", "content": ""}


def test_n_choices_and_seed(sdk):
    answer = sdk.chat.completions.create(model="smollm2", messages=CHAT, max_tokens=12, n=3, seed=7, temperature=1.0)
    assert [c.index for c in answer.choices] == [0, 1, 2]
    again = sdk.chat.completions.create(model="smollm2", messages=CHAT, max_tokens=12, n=3, seed=7, temperature=1.0)
    assert [c.message.content for c in answer.choices] == [c.message.content for c in again.choices]
    assert len({c.message.content for c in answer.choices}) > 1  # each choice has its own seed
    streamed = list(sdk.chat.completions.create(model="smollm2", messages=CHAT, max_tokens=12, n=3, seed=7,
                                                temperature=1.0, stream=True))
    texts = {i: "" for i in range(3)}
    for chunk in streamed:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert [texts[i] for i in range(3)] == [c.message.content for c in answer.choices]


def test_stop_sequences_and_max_completion_tokens(sdk):
    answer = sdk.chat.completions.create(model="smollm2", max_completion_tokens=40, temperature=0,
                                         messages=[{"role": "user", "content": "Count from 1 to 20, separated by commas."}],
                                         stop=["7"])
    text = answer.choices[0].message.content
    assert "7" not in text and "6" in text and answer.choices[0].finish_reason == "stop"


def test_user_and_penalties_are_accepted(sdk):
    answer = sdk.chat.completions.create(model="smollm2", messages=CHAT, max_tokens=8, user="alice",
                                         presence_penalty=0.5, frequency_penalty=0.5)
    assert answer.usage.completion_tokens >= 1


async def test_async_client_chat_and_stream(gateway):
    async with async_sdk(gateway) as client:
        await _async_chat_and_stream(client)


async def _async_chat_and_stream(async_sdk):
    answer = await async_sdk.chat.completions.create(model="smollm2", messages=CHAT, max_tokens=16, temperature=0)
    stream = await async_sdk.chat.completions.create(model="smollm2", messages=CHAT, max_tokens=16, temperature=0,
                                                     stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == answer.choices[0].message.content


# Completions ---------------------------------------------------------------------------------------

def test_completion_of_a_raw_prompt(sdk):
    answer = sdk.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=8, temperature=0)
    assert answer.object == "text_completion" and "Paris" in answer.choices[0].text
    assert answer.usage.prompt_tokens == 5  # the raw prompt, no chat template around it


def test_completion_stream_echo_and_several_prompts(sdk):
    prompts = ["The capital of France is", "One, two, three,"]
    plain = sdk.completions.create(model="smollm2", prompt=prompts, max_tokens=6, temperature=0, echo=True)
    assert [c.index for c in plain.choices] == [0, 1]
    assert plain.choices[0].text.startswith(prompts[0]) and plain.choices[1].text.startswith(prompts[1])
    texts = {0: "", 1: ""}
    for chunk in sdk.completions.create(model="smollm2", prompt=prompts, max_tokens=6, temperature=0, echo=True,
                                        stream=True):
        for choice in chunk.choices:
            texts[choice.index] += choice.text
    assert [texts[0], texts[1]] == [c.text for c in plain.choices]


async def test_async_completion(gateway):
    async with async_sdk(gateway) as client:
        answer = await client.completions.create(model="smollm2", prompt="Hello", max_tokens=4)
    assert answer.usage.completion_tokens == 4 or answer.choices[0].finish_reason == "stop"


# Models and errors ------------------------------------------------------------------------------------

def test_models_list_and_retrieve(sdk):
    ids = [m.id for m in sdk.models.list()]
    assert {"smollm2", "echo"} <= set(ids)
    model = sdk.models.retrieve("smollm2")
    assert model.id == "smollm2" and model.object == "model"
    with pytest.raises(openai.NotFoundError) as raised:
        sdk.models.retrieve("no-such-model")
    assert raised.value.body["code"] == "MODEL_NOT_FOUND"


@pytest.mark.parametrize("kwargs, error, code", [
    ({"model": "no-such-model"}, openai.NotFoundError, "MODEL_NOT_FOUND"),
    ({"temperature": 3}, openai.UnprocessableEntityError, "INVALID_REQUEST"),
    ({"max_tokens": 0}, openai.UnprocessableEntityError, "INVALID_REQUEST"),
    ({"n": 100}, openai.UnprocessableEntityError, "INVALID_REQUEST"),
    ({"logprobs": True}, openai.BadRequestError, "UNSUPPORTED_PARAMETER"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, openai.BadRequestError,
     "UNSUPPORTED_PARAMETER"),
    ({"response_format": {"type": "json_object"}}, openai.BadRequestError, "UNSUPPORTED_PARAMETER"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, openai.UnprocessableEntityError, "INVALID_REQUEST"),
    ({"messages": []}, openai.UnprocessableEntityError, "INVALID_REQUEST"),
    ({"model": "fault", "messages": [{"role": "user", "content": "FAIL: the engine broke"}]}, openai.InternalServerError,
     "TRITON_SERVER_ERROR"),
])
def test_errors_raise_the_sdks_exception_classes(sdk, kwargs, error, code):
    request = {"model": "smollm2", "messages": CHAT, "max_tokens": 4, **kwargs}
    with pytest.raises(error) as raised:
        sdk.chat.completions.create(**request)
    assert raised.value.body["code"] == code
    assert raised.value.body["message"]


def test_error_in_the_middle_of_a_stream_raises(sdk):
    stream = sdk.chat.completions.create(model="fault", messages=[{"role": "user", "content": "FAIL_MIDSTREAM"}],
                                         stream=True)
    with pytest.raises(openai.APIError, match="middle of the stream"):
        for _ in stream:
            pass


# LangChain -----------------------------------------------------------------------------------------

def test_langchain_chat_openai_invoke_and_stream(gateway):
    llm = ChatOpenAI(base_url=f"{gateway.url}/v1", api_key="unused", model="smollm2", temperature=0, max_tokens=16,
                     max_retries=0)
    messages = [("system", "You are a helpful assistant."), ("human", "What is the capital of France?")]
    answer = llm.invoke(messages)
    assert "Paris" in answer.content
    assert answer.usage_metadata["output_tokens"] >= 1
    streamed = "".join(chunk.content for chunk in llm.stream(messages))
    assert streamed == answer.content
