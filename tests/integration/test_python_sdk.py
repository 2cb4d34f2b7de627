"""The Python SDK (sdk/python, `conch_client`) end to end against the real gateway + Triton + SmolLM2."""

from __future__ import annotations

import asyncio

import pytest

from conch_client import AsyncClient, Client, LLMInferenceClient, NotFoundError, ValidationError

pytestmark = pytest.mark.triton


@pytest.fixture
def sdk(gateway):
    with Client(gateway.url) as client:
        yield client


def test_seed_003_names_generate(gateway):
    client = LLMInferenceClient(base_url=gateway.url, api_token="unused-when-auth-is-off")
    try:
        models = client.list_models()
        assert "smollm2" in [m.id for m in models]
        result = client.generate(model_id="smollm2", prompt="Hello, world!", max_tokens=8, temperature=0)
        assert result.text.strip() and result.model == "smollm2"
        assert result.finish_reason in ("stop", "length") and result.usage.completion_tokens <= 8
    finally:
        client.close()


def test_generate_stream_yields_tokens_then_finished(sdk):
    events = list(sdk.generate_stream("Count: one, two,", "smollm2", max_tokens=6, temperature=0))
    assert events[-1].finished
    assert "".join(e.token for e in events).strip()
    # Greedy decoding: the stream and the one-shot answer are the same text.
    assert "".join(e.token for e in events) == sdk.generate("Count: one, two,", "smollm2", 6, temperature=0).text


def test_openai_chat_completions_and_stream(sdk):
    messages = [{"role": "user", "content": "Say hi"}]
    answer = sdk.chat_completions(model="smollm2", messages=messages, max_tokens=4, temperature=0)
    assert answer["object"] == "chat.completion" and answer["choices"][0]["message"]["content"]
    chunks = list(sdk.chat_completions_stream(model="smollm2", messages=messages, max_tokens=4, temperature=0))
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    assert text == answer["choices"][0]["message"]["content"]


def test_completions(sdk):
    answer = sdk.completions(model="smollm2", prompt="The sky is", max_tokens=3)
    assert answer["choices"][0]["text"]


def test_error_envelope_becomes_typed_exceptions(sdk):
    with pytest.raises(NotFoundError) as missing:
        sdk.generate("hi", "no-such-model", 4)
    assert missing.value.status in (400, 404) and missing.value.code == "MODEL_NOT_FOUND"
    with pytest.raises(ValidationError) as bad:
        sdk.generate("hi", "smollm2", max_tokens=-1)
    assert bad.value.status == 422 or bad.value.status == 400
    assert bad.value.param and "max_tokens" in bad.value.param


def test_breaking_out_of_a_stream_closes_it(sdk):
    stream = sdk.generate_stream("Write a long story about the sea.", "smollm2", max_tokens=200)
    first = next(stream)
    stream.close()  # leaving early must not hang nor leak: the client still works
    assert first.token is not None
    assert sdk.generate("Hi", "smollm2", 2).text is not None



@pytest.mark.asyncio
async def test_async_client_generate_stream_models(gateway):
    async with AsyncClient(gateway.url) as client:
        models, result = await asyncio.gather(client.list_models(),
                                              client.generate("Hello", "smollm2", 4, temperature=0))
        assert "smollm2" in [m.id for m in models] and result.text
        tokens = [e.token async for e in client.generate_stream("Hello", "smollm2", 4, temperature=0)]
        assert "".join(tokens) == result.text
        with pytest.raises(NotFoundError):
            await client.generate("hi", "no-such-model", 4)


def test_embeddings(sdk):
    answer = sdk.embeddings(["one", "two"], model="all-minilm-l6-v2")
    assert [d["index"] for d in answer["data"]] == [0, 1] and len(answer["data"][0]["embedding"]) == 384


def test_sessions_chat_stream_status_reset(sdk):
    session = "python-sdk-test"
    sdk.reset(session)
    reply = sdk.chat("Hello!", session=session, max_tokens=8, temperature=0)
    assert reply.status == "success" and reply.message == "Hello!" and reply.response
    events = list(sdk.chat_stream("And again?", session=session, max_tokens=8, temperature=0))
    assert events[-1].finished
    assert sdk.status(session).conversation_length >= 2
    sdk.reset(session)
    assert sdk.status(session).conversation_length == 0
    # a session's model is chosen by its first message and kept
    sdk.reset("python-sdk-echo")
    assert sdk.chat("Hello!", session="python-sdk-echo", max_tokens=4, temperature=0, model="echo").response
    assert sdk.status("python-sdk-echo").model_name != sdk.status(session).model_name


@pytest.mark.asyncio
async def test_async_sessions_with_a_chosen_model(gateway):
    # `fault`, a test model in the real Triton, answers "ok" to ordinary text: the reply names the model
    session = "python-sdk-async-fault"
    async with AsyncClient(gateway.url) as client:
        await client.reset(session)
        reply = await client.chat("Hello", session=session, model="fault", max_tokens=4)
        assert (reply.status, reply.response.strip()) == ("success", "ok")
        tokens = [e.token async for e in client.chat_stream("Again", session=session, max_tokens=4)]
        assert "".join(tokens).strip() == "ok"  # the session kept its model
        status = await client.status(session)
        assert (status.model_name, status.conversation_length) == ("fault", 4)
        await client.reset(session)
        assert (await client.status(session)).conversation_length == 0
        assert (await client.health())["models"]["smollm2"] == "healthy"
