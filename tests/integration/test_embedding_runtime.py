"""The sentence-embedding runtime (all-MiniLM-L6-v2) inside the real Triton, through Triton's own
KServe v2 endpoints — JSON over HTTP and the tritonclient library: the embedding contract, the
vectors, token counts, and clear errors."""

from __future__ import annotations

import os
from typing import Iterator

import httpx
import numpy as np
import psutil
import pytest
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from conch_engines import bundled
from conch_engines.runtimes.sentence_embedding.encoder import SentenceEncoder
from conch_engines.triton_server import cpu_flags, openblas_coretype

pytestmark = pytest.mark.triton

MODEL = "all-minilm-l6-v2"
PANGRAM = "the quick brown fox jumps over the lazy dog"  # nine words, one wordpiece each


def infer_json(triton, texts: list[str]) -> httpx.Response:
    body = {"inputs": [{"name": "text_input", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}
    return httpx.post(f"{triton.url}/v2/models/{MODEL}/infer", json=body, timeout=120)


def embed_json(triton, texts: list[str]) -> tuple[np.ndarray, list[int]]:
    response = infer_json(triton, texts)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    embedding, tokens = outputs["embedding"], outputs["num_input_tokens"]
    assert embedding["datatype"] == "FP32" and tokens["datatype"] == "INT32"
    assert tokens["shape"] == [len(texts)]
    return np.array(embedding["data"], dtype=np.float32).reshape(embedding["shape"]), tokens["data"]


@pytest.fixture(scope="module")
def triton_client(triton) -> Iterator[triton_http.InferenceServerClient]:
    client = triton_http.InferenceServerClient(triton.url.removeprefix("http://"), network_timeout=120)
    yield client
    client.close()


def embed_client(client, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    text_input = triton_http.InferInput("text_input", [len(texts)], "BYTES")
    text_input.set_data_from_numpy(np.array([t.encode("utf-8") for t in texts], dtype=np.object_))
    result = client.infer(MODEL, [text_input])
    return result.as_numpy("embedding"), result.as_numpy("num_input_tokens")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_model_metadata_is_the_embedding_contract(triton):
    metadata = httpx.get(f"{triton.url}/v2/models/{MODEL}").json()
    assert metadata["inputs"] == [{"name": "text_input", "datatype": "BYTES", "shape": [-1]}]
    assert {o["name"]: (o["datatype"], o["shape"]) for o in metadata["outputs"]} == {
        "embedding": ("FP32", [-1, -1]), "num_input_tokens": ("INT32", [-1])}
    config = httpx.get(f"{triton.url}/v2/models/{MODEL}/config").json()
    assert config["max_batch_size"] == 0
    assert not config.get("model_transaction_policy", {}).get("decoupled", False)


def test_json_infer_returns_unit_vectors_and_token_counts(triton):
    texts = ["hello", PANGRAM, "A man is eating food.", "ünïcödé text, too"]
    vectors, tokens = embed_json(triton, texts)
    assert vectors.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert tokens[:2] == [3, 11]  # [CLS] + wordpieces + [SEP]
    assert all(n >= 3 for n in tokens)


def test_semantic_similarity_with_tritonclient(triton_client):
    # sentence-transformers' own semantic-search example corpus
    vectors, tokens = embed_client(triton_client, ["A man is eating food.", "A man is eating a piece of bread.",
                                            "The girl is carrying a baby."])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32 and tokens.dtype == np.int32
    food_bread, food_baby = cosine(vectors[0], vectors[1]), cosine(vectors[0], vectors[2])
    assert food_bread > 0.6 and food_baby < 0.2 and food_bread - food_baby > 0.4


def test_reproduces_the_published_similarity_matrix(triton_client):
    # sentence-transformers' quickstart for all-MiniLM-L6-v2, through Triton
    vectors, _ = embed_client(triton_client, ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."])
    np.testing.assert_allclose(vectors @ vectors.T, [[1, 0.6660, 0.1046], [0.6660, 1, 0.1411], [0.1046, 0.1411, 1]],
                               atol=2e-4)


def test_triton_serves_what_the_encoder_computes(triton):
    texts = ["hello world", " ".join([PANGRAM] * 5)]
    vectors, tokens = embed_json(triton, texts)
    local = SentenceEncoder(bundled.minilm().model_dir).encode(texts)
    np.testing.assert_allclose(vectors, local.vectors, atol=1e-6)
    assert tokens == local.token_counts.tolist()


def test_long_texts_are_truncated_to_256_tokens(triton_client):
    long_text = " ".join([PANGRAM] * 40)  # 360 words
    head = " ".join(long_text.split()[:254])
    vectors, tokens = embed_client(triton_client, [long_text, head])
    assert tokens.tolist() == [256, 256]
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)


@pytest.mark.parametrize("texts, message", [
    ([], "text_input is empty"),
    (["fine", ""], "text_input[1] is an empty string"),
    (["x"] * 2049, "at most 2048"),
])
def test_bad_inputs_are_400_with_a_clear_message(triton, texts, message):
    response = infer_json(triton, texts)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_tritonclient_sees_the_error_too(triton_client):
    text_input = triton_http.InferInput("text_input", [1], "BYTES")
    text_input.set_data_from_numpy(np.array([b""], dtype=np.object_))
    with pytest.raises(InferenceServerException, match="empty string"):
        triton_client.infer(MODEL, [text_input])


def test_many_texts_in_one_request(triton_client):
    texts = [f"sentence {i}: " + " ".join(PANGRAM.split()[: 1 + i % 9]) for i in range(100)]
    vectors, tokens = embed_client(triton_client, texts)
    assert vectors.shape == (100, 384) and len(set(map(bytes, vectors))) == 100
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_the_model_runs_with_openblas_kernels_for_this_cpu(triton):
    stubs = [p for p in psutil.Process(triton.pid).children(recursive=True) if MODEL in " ".join(p.cmdline())]
    assert stubs, "no Python backend stub for the embedding model"
    expected = os.environ.get("OPENBLAS_CORETYPE") or openblas_coretype(cpu_flags())
    assert all(stub.environ().get("OPENBLAS_CORETYPE") == expected for stub in stubs)
