"""Clients nobody on this project wrote, used exactly as their own documentation shows: TGI's
`text-generation` (sync, async, streaming, errors) next to `huggingface_hub`, and the `openai` SDK
(sync and async). A dialect is only compatible if its official client works unmodified."""

from __future__ import annotations

import asyncio

import numpy as np
import openai
import pytest
import text_generation
from huggingface_hub import InferenceClient

pytestmark = pytest.mark.triton

PROMPT = "The capital of France is"


def test_text_generation_client_generate(gateway):
    client = text_generation.Client(gateway.url, timeout=120)
    response = client.generate(PROMPT, max_new_tokens=8)
    assert "Paris" in response.generated_text
    # Triton's text interfaces carry no token ids, so details.tokens is empty (services/tgi.py); the count is real.
    assert response.details.generated_tokens == 8 and response.details.tokens == []
    assert response.details.finish_reason in ("length", "eos_token")
    # The same text as huggingface_hub gets from the same route family (greedy).
    assert InferenceClient(base_url=gateway.url).text_generation(PROMPT, max_new_tokens=8) == response.generated_text


def test_text_generation_client_stream(gateway):
    client = text_generation.Client(gateway.url, timeout=120)
    whole = client.generate(PROMPT, max_new_tokens=10).generated_text
    events = list(client.generate_stream(PROMPT, max_new_tokens=10))
    assert "".join(e.token.text for e in events if not e.token.special) == whole
    assert events[-1].generated_text == whole and events[-1].details.generated_tokens == 10
    assert all(e.details is None for e in events[:-1])


def test_text_generation_async_client(gateway):
    async def both():
        client = text_generation.AsyncClient(gateway.url, timeout=120)
        whole = await client.generate(PROMPT, max_new_tokens=6)
        streamed = [e async for e in client.generate_stream(PROMPT, max_new_tokens=6)]
        return whole, streamed

    whole, streamed = asyncio.run(both())
    assert "Paris" in whole.generated_text
    assert streamed[-1].generated_text == whole.generated_text


def test_text_generation_client_sampling_parameters(gateway):
    client = text_generation.Client(gateway.url, timeout=120)
    first = client.generate(PROMPT, max_new_tokens=8, do_sample=True, temperature=0.9, top_p=0.9, top_k=40, seed=7)
    again = client.generate(PROMPT, max_new_tokens=8, do_sample=True, temperature=0.9, top_p=0.9, top_k=40, seed=7)
    assert first.generated_text == again.generated_text and first.details.seed == 7


def test_text_generation_client_errors_are_its_own_exceptions(gateway):
    client = text_generation.Client(gateway.url, timeout=120)
    # text-generation maps the status and error_type of TGI's error body to its own exception classes.
    with pytest.raises(text_generation.errors.ValidationError):
        client.generate("word " * 5000, max_new_tokens=4)
    with pytest.raises(text_generation.errors.ValidationError):
        client.generate(PROMPT, max_new_tokens=0)


def test_openai_sdk_sync_and_async(gateway):
    sync = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
    chat = sync.chat.completions.create(model="smollm2", max_tokens=8, temperature=0,
                                        messages=[{"role": "user", "content": "Name a color."}])
    assert chat.choices[0].message.content and chat.usage.completion_tokens <= 8

    async def streamed() -> str:
        client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
        stream = await client.chat.completions.create(model="smollm2", max_tokens=8, temperature=0, stream=True,
                                                      messages=[{"role": "user", "content": "Name a color."}])
        return "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])

    assert asyncio.run(streamed()) == chat.choices[0].message.content
    with pytest.raises(openai.NotFoundError):
        sync.completions.create(model="no-such-model", prompt="hi", max_tokens=2)
    with pytest.raises(openai.UnprocessableEntityError):
        sync.completions.create(model="smollm2", prompt="", max_tokens=2)


# huggingface_hub's feature extraction (TEI's /embed) ----------------------------------------------

@pytest.mark.parametrize("route", ["/embed", "/models/all-minilm-l6-v2/pipeline/feature-extraction"])
def test_huggingface_hub_feature_extraction(gateway, client, route):
    texts = ["The cat sat on the mat.", "A kitten rested on the rug."]
    vectors = InferenceClient(base_url=f"{gateway.url}{route}").feature_extraction(texts[0])
    assert vectors.shape == (1, 384) and abs(float(np.linalg.norm(vectors[0])) - 1) < 1e-4
    openai_vectors = client.post("/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": texts}).json()["data"]
    expected = np.asarray(openai_vectors[0]["embedding"])
    assert np.allclose(vectors[0], expected / np.linalg.norm(expected), atol=1e-5)
    both = client.post(route, json={"inputs": texts, "normalize": False}).json()
    assert np.allclose(both[1], openai_vectors[1]["embedding"], atol=1e-5)


def test_feature_extraction_errors_are_clear(client):
    refused = client.post("/embed", json={"inputs": "hi", "truncation_direction": "Left"})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "INVALID_REQUEST"
    wrong_kind = client.post("/models/smollm2/pipeline/feature-extraction", json={"inputs": "hi"})
    assert wrong_kind.status_code == 400 and wrong_kind.json()["error"]["code"] == "UNSUPPORTED_TASK"
    assert client.post("/embed", json={"inputs": ""}).json()["error"]["code"] == "INVALID_REQUEST"
