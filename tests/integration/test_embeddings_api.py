"""`POST /v1/embeddings` through the gateway to all-MiniLM-L6-v2 in the real Triton, driven by the
official `openai` SDK."""

from __future__ import annotations

import base64

import numpy as np
import openai
import pytest

pytestmark = pytest.mark.triton

MODEL = "all-minilm-l6-v2"


@pytest.fixture
def sdk(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_embeddings_of_a_list(sdk):
    texts = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
    answer = sdk.embeddings.create(model=MODEL, input=texts)
    assert answer.model == MODEL and [d.index for d in answer.data] == [0, 1, 2]
    vectors = np.array([d.embedding for d in answer.data])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    # sentence-transformers' own quickstart numbers for these sentences
    assert vectors[0] @ vectors[1] == pytest.approx(0.6660, abs=1e-3)
    assert vectors[0] @ vectors[2] == pytest.approx(0.1046, abs=1e-3)
    assert vectors[1] @ vectors[2] == pytest.approx(0.1411, abs=1e-3)
    assert answer.usage.prompt_tokens == answer.usage.total_tokens > 3 * 2


def test_single_string_and_base64_agree(sdk):
    as_floats = sdk.embeddings.create(model=MODEL, input="hello world")
    # The SDK asks for base64 by default and decodes it; ask explicitly and decode by hand too.
    raw = sdk.embeddings.with_raw_response.create(model=MODEL, input="hello world", encoding_format="base64")
    encoded = raw.http_response.json()["data"][0]["embedding"]
    decoded = np.frombuffer(base64.b64decode(encoded), dtype="<f4")
    assert np.allclose(decoded, as_floats.data[0].embedding, atol=1e-6)


async def test_async_client(gateway):
    async with openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0) as client:
        answer = await client.embeddings.create(model=MODEL, input=["one", "two"])
    assert len(answer.data) == 2


@pytest.mark.parametrize("kwargs, error, code", [
    ({"input": ""}, openai.UnprocessableEntityError, "INVALID_REQUEST"),
    ({"input": []}, openai.BadRequestError, "UNSUPPORTED_PARAMETER"),
    ({"input": [[1, 2, 3]]}, openai.BadRequestError, "UNSUPPORTED_PARAMETER"),
    ({"input": "x", "dimensions": 128}, openai.BadRequestError, "UNSUPPORTED_PARAMETER"),
    ({"input": "x", "model": "smollm2"}, openai.BadRequestError, "UNSUPPORTED_TASK"),
    ({"input": "x", "model": "nope"}, openai.NotFoundError, "MODEL_NOT_FOUND"),
    ({"input": ["x"] * 2049}, openai.UnprocessableEntityError, "INVALID_REQUEST"),
])
def test_errors(sdk, kwargs, error, code):
    with pytest.raises(error) as raised:
        sdk.embeddings.create(**{"model": MODEL, **kwargs})
    assert raised.value.body["code"] == code


def test_text_routes_refuse_the_embedding_model(sdk):
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert raised.value.body["code"] == "UNSUPPORTED_TASK"


def test_models_list_says_what_each_model_does(sdk):
    supports = {m.id: m.supports for m in sdk.models.list()}
    assert supports[MODEL] == ["embeddings"] and "chat" in supports["smollm2"]
