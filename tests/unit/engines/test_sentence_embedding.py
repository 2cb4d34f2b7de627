"""The numpy sentence encoder with the real all-MiniLM-L6-v2 weights, its request checks, and the
Triton config and `Model` resource that serve it."""

from __future__ import annotations

import math
from importlib.util import find_spec

import numpy as np
import pytest

from conch_engines import bundled, repository
from conch_engines.triton_server import openblas_coretype
from conch_engines.runtimes.sentence_embedding.encoder import (
    MAX_TEXTS,
    InvalidRequest,
    SentenceEncoder,
    _gelu,
    parse_texts,
)

# Published by sentence-transformers for all-MiniLM-L6-v2 (4 decimals): the quickstart of its
# README / docs index, and the output shown in examples/sentence_transformer/applications/
# semantic-search/README.md.
QUICKSTART = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
QUICKSTART_SIMILARITY = [[1.0000, 0.6660, 0.1046], [0.6660, 1.0000, 0.1411], [0.1046, 0.1411, 1.0000]]
SEARCH_CORPUS = ["A man is eating food.", "A man is eating a piece of bread.", "A man is riding a horse.",
                 "A man is riding a white horse on an enclosed ground.", "A cheetah is running behind its prey."]
SEARCH_SCORES = {"A man is eating pasta.": [0.7035, 0.5272, 0.1889, 0.1047, 0.0980]}

# Printed by mlflow's examples/sentence_transformers/simple.py (SentenceTransformer("all-MiniLM-L6-v2")):
# the first four and last four components of each embedding.
MLFLOW_TEXTS = ["hello world", "i am mlflow"]
MLFLOW_HEADS = [[-3.44772562e-02, 3.10232025e-02, 6.73496164e-03, 2.61089969e-02],
                [4.81191138e-03, -9.33756605e-02, 6.95968643e-02, 8.09735525e-03]]
MLFLOW_TAILS = [[2.37922110e-02, -2.28897743e-02, 3.89375277e-02, 3.02067865e-02],
                [6.57437667e-02, -2.72239652e-02, 4.02687863e-02, -1.05599344e-01]]

PANGRAM = "the quick brown fox jumps over the lazy dog"  # nine words, one wordpiece each


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return SentenceEncoder(bundled.minilm().model_dir)


def test_shapes_types_and_unit_norm(encoder):
    result = encoder.encode(QUICKSTART)
    assert result.vectors.shape == (3, 384) and result.vectors.dtype == np.float32
    assert result.token_counts.dtype == np.int32
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-6)


def test_reproduces_the_published_similarities(encoder):
    vectors = encoder.encode(QUICKSTART).vectors
    np.testing.assert_allclose(vectors @ vectors.T, QUICKSTART_SIMILARITY, atol=2e-4)
    corpus = encoder.encode(SEARCH_CORPUS).vectors
    for query, scores in SEARCH_SCORES.items():
        np.testing.assert_allclose(corpus @ encoder.encode([query]).vectors[0], scores, atol=2e-4)


def test_reproduces_published_embedding_components(encoder):
    vectors = encoder.encode(MLFLOW_TEXTS).vectors
    np.testing.assert_allclose(vectors[:, :4], MLFLOW_HEADS, atol=1e-6)
    np.testing.assert_allclose(vectors[:, -4:], MLFLOW_TAILS, atol=1e-6)


def test_token_counts_include_cls_and_sep(encoder):
    counts = encoder.encode(["hello", PANGRAM, "hello world"]).token_counts
    assert counts.tolist() == [3, 11, 4]


def test_truncates_to_256_tokens_like_sentence_transformers(encoder):
    words = (PANGRAM + " ") * 40  # 360 words
    head = " ".join(words.split()[:254])  # what survives: 254 words + [CLS] + [SEP]
    result = encoder.encode([words, head])
    assert result.token_counts.tolist() == [256, 256]
    # Rows of one batch may go through different OpenBLAS kernels (e.g. its Zen kernels on an AMD
    # EPYC), so equal inputs in one batch agree to float32 rounding, not bit for bit; alone, exactly.
    np.testing.assert_allclose(result.vectors[0], result.vectors[1], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(encoder.encode([words]).vectors[0], encoder.encode([head]).vectors[0])


def test_does_not_keep_tokenizer_json_s_own_128_token_limit(encoder):
    # tokenizer.json truncates and pads to 128; sentence-transformers uses 256 and no fixed padding.
    text = " ".join([PANGRAM] * 20)  # 180 words
    assert encoder.encode([text]).token_counts.tolist() == [182]
    assert encoder.encode(["hi"]).token_counts.tolist() == [3]


def test_an_embedding_does_not_depend_on_its_batch(encoder):
    short = "A man is eating food."
    alone = encoder.encode([short]).vectors[0]
    long_text = " ".join([PANGRAM] * 25)
    batched = encoder.encode([long_text, short, "x", long_text]).vectors[1]
    np.testing.assert_allclose(batched, alone, atol=1e-5)


def test_order_is_kept_across_mini_batches(encoder):
    texts = [f"sentence number {i} " + "word " * (i % 7) for i in range(70)]  # mini-batches of 32
    together = encoder.encode(texts)
    for i in (0, 1, 33, 69):
        alone = encoder.encode([texts[i]])
        np.testing.assert_allclose(together.vectors[i], alone.vectors[0], atol=1e-5)
        assert together.token_counts[i] == alone.token_counts[0]


def test_is_deterministic(encoder):
    texts = QUICKSTART + [" ".join([PANGRAM] * 10)]
    np.testing.assert_array_equal(encoder.encode(texts).vectors, encoder.encode(texts).vectors)


def test_no_texts_is_an_empty_result(encoder):
    result = encoder.encode([])
    assert result.vectors.shape == (0, 384) and result.token_counts.shape == (0,)


def test_gelu_is_the_exact_erf_form():
    x = np.linspace(-10, 10, 20001, dtype=np.float32)
    exact = np.array([v / 2 * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64)])
    np.testing.assert_allclose(_gelu(x.copy()), exact, atol=1e-6)
    tanh_approximation = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    assert np.abs(tanh_approximation - exact).max() > 1e-4  # the test would notice the approximation


def test_parse_texts_decodes_and_checks():
    assert parse_texts([b"caf\xc3\xa9", "plain"]) == ["café", "plain"]
    assert len(parse_texts([b"x"] * MAX_TEXTS)) == MAX_TEXTS


@pytest.mark.parametrize("values, message", [
    ([], "text_input is empty"),
    ([b"ok", b""], "text_input[1] is an empty string"),
    ([b"x"] * (MAX_TEXTS + 1), f"at most {MAX_TEXTS}"),
    ([b"\xff\xfe"], "not valid UTF-8"),
])
def test_parse_texts_rejects_clearly(values, message):
    with pytest.raises(InvalidRequest, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_texts(values)


def test_bundled_model_matches_its_config(encoder):
    model = bundled.minilm()
    assert model.id == "all-minilm-l6-v2" and model.display_name == "all-MiniLM-L6-v2"
    assert model.dimensions == encoder.dimensions == 384
    assert encoder.max_seq_length == 256 and encoder.normalize


def test_triton_config_parses_and_declares_the_embedding_contract():
    files = repository.embedding_files("all-minilm-l6-v2", "/models/minilm", instances=2)
    config = repository.parse_config(files["all-minilm-l6-v2/config.pbtxt"])
    assert config.name == "all-minilm-l6-v2" and config.backend == "python"
    assert config.max_batch_size == 0 and not config.model_transaction_policy.decoupled
    assert config.parameters["model_dir"].string_value == "/models/minilm"
    assert config.instance_group[0].count == 2
    assert config.instance_group[0].kind == repository.mc.ModelInstanceGroup.KIND_CPU
    (text,) = config.input
    assert (text.name, text.data_type, list(text.dims), text.optional) == ("text_input", repository.mc.TYPE_STRING, [-1], False)
    outputs = {t.name: (t.data_type, list(t.dims)) for t in config.output}
    assert outputs == {"embedding": (repository.mc.TYPE_FP32, [-1, -1]), "num_input_tokens": (repository.mc.TYPE_INT32, [-1])}
    shim = files["all-minilm-l6-v2/1/model.py"]
    module = "conch_engines.runtimes.sentence_embedding.triton_model"
    assert f"from {module} import TritonPythonModel" in shim and find_spec(module) is not None


def test_embedded_default_publishes_both_models(tmp_path):
    from conch_engines.embedded import EmbeddedConfig, prepare
    from conch_gateway.registry.local import load_models

    repo, models_file, model, embedder = prepare(EmbeddedConfig(state_dir=tmp_path, triton_http_port=8123))
    config = repository.parse_config((repo / embedder.id / "config.pbtxt").read_text())
    assert config.parameters["model_dir"].string_value == str(embedder.model_dir)
    assert (repo / model.id / "config.pbtxt").is_file()
    llm, embedding = load_models(models_file)
    assert llm.metadata.name == "smollm2" and llm.status.interface.value == "ensemble"
    assert embedding.metadata.name == "all-minilm-l6-v2" and embedding.spec.runtime.value == "external"
    assert embedding.status.interface.value == "embedding" and embedding.status.ready
    assert embedding.status.endpoint == "http://127.0.0.1:8123" and embedding.status.tritonModel == "all-minilm-l6-v2"
    assert embedding.spec.promptFamily is None and embedding.spec.chatTemplate is None


@pytest.mark.parametrize("flags, core", [
    ({"fma", "avx2", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx512_fp16"}, "SKYLAKEX"),
    ({"fma", "avx2", "avx512f"}, "HASWELL"),  # AVX-512 without the SkylakeX subsets
    ({"fma", "avx2"}, "HASWELL"),
    ({"sse4_2", "avx"}, None),  # older CPUs: OpenBLAS's own detection
    (set(), None),  # not x86, or no /proc/cpuinfo
])
def test_openblas_kernels_follow_the_cpu_features(flags, core):
    # numpy<2's OpenBLAS takes CPU models newer than it for a Prescott: ~5x slower matrix products
    assert openblas_coretype(flags) == core
