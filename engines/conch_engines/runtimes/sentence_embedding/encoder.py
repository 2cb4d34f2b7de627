"""Sentence embeddings from a BERT checkpoint in sentence-transformers layout (all-MiniLM-L6-v2),
computed with numpy — free of Triton types (and of torch) so it can be unit-tested.

It computes what `SentenceTransformer.encode` computes for such a model directory: BERT
(`config.json`, `model.safetensors`), mean pooling over the attention mask (`1_Pooling`), and L2
normalisation when `modules.json` lists a Normalize module; texts are cut to
`sentence_bert_config.json`'s `max_seq_length` tokens. float32 throughout, as in torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

MAX_TEXTS = 2048  # per request, as OpenAI's embeddings API


class InvalidRequest(ValueError):
    """The request cannot be served as asked (maps to Triton INVALID_ARG)."""


def parse_texts(values: Sequence[bytes | str]) -> list[str]:
    """The texts of a request, checked: at least one, at most MAX_TEXTS, none empty, all UTF-8."""
    if len(values) == 0:
        raise InvalidRequest("text_input is empty: send at least one text to embed")
    if len(values) > MAX_TEXTS:
        raise InvalidRequest(f"text_input has {len(values)} texts; at most {MAX_TEXTS} can be embedded per request")
    texts = []
    for i, value in enumerate(values):
        try:
            text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
        except UnicodeDecodeError as exc:
            raise InvalidRequest(f"text_input[{i}] is not valid UTF-8: {exc}") from None
        if not text:
            raise InvalidRequest(f"text_input[{i}] is an empty string; every text to embed must be non-empty")
        texts.append(text)
    return texts


@dataclass(frozen=True)
class Embeddings:
    vectors: np.ndarray  # (n, dimensions) float32, in the order of the texts
    token_counts: np.ndarray  # (n,) int32: tokens each text was embedded from, after truncation, incl. [CLS]/[SEP]


@dataclass(frozen=True)
class _Layer:
    qkv_w: np.ndarray  # (hidden, 3*hidden): query (pre-scaled), key and value in one matmul
    qkv_b: np.ndarray
    out_w: np.ndarray
    out_b: np.ndarray
    ln1: tuple[np.ndarray, np.ndarray]
    ff_in_w: np.ndarray
    ff_in_b: np.ndarray
    ff_out_w: np.ndarray
    ff_out_b: np.ndarray
    ln2: tuple[np.ndarray, np.ndarray]


class SentenceEncoder:
    def __init__(self, model_dir: str | Path, batch_size: int = 32):
        """Loads a sentence-transformers directory; refuses what this encoder does not implement."""
        model_dir = Path(model_dir)
        config = _json(model_dir / "config.json")
        if config.get("hidden_act", "gelu") != "gelu" or config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{model_dir} is not a plain BERT encoder (gelu, absolute positions)")
        pooling = _json(model_dir / "1_Pooling" / "config.json")
        if not pooling.get("pooling_mode_mean_tokens") or any(
                v for k, v in pooling.items() if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens"):
            raise ValueError(f"{model_dir} does not use mean pooling alone, the only pooling implemented here")
        modules = _json(model_dir / "modules.json")
        self.normalize = any(m["type"].endswith(".Normalize") for m in modules)
        self.max_seq_length = min(_json(model_dir / "sentence_bert_config.json")["max_seq_length"],
                                  config["max_position_embeddings"])
        self.batch_size = batch_size
        self.dimensions = config["hidden_size"]
        self._heads = config["num_attention_heads"]
        self._eps = np.float32(config["layer_norm_eps"])

        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # tokenizer.json itself pads and truncates to 128 tokens; sentence-transformers overrides
        # both (max_seq_length, pad to the longest of the batch), and so must we, or long texts
        # would lose half their tokens and short ones would be embedded with padding.
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_seq_length)

        w = load_file(str(model_dir / "model.safetensors"))
        self._word = w["embeddings.word_embeddings.weight"]
        self._position = w["embeddings.position_embeddings.weight"]
        self._token_type = w["embeddings.token_type_embeddings.weight"][0]  # one segment: type id 0
        self._ln = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        scale = np.float32(1 / np.sqrt(self.dimensions // self._heads))  # folded into the query projection
        self._layers = []
        for i in range(config["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            a = p + "attention.self."
            # torch's Linear stores (out, in): transposed once here so every forward is x @ W.
            self._layers.append(_Layer(
                qkv_w=np.ascontiguousarray(np.concatenate(
                    [w[a + "query.weight"] * scale, w[a + "key.weight"], w[a + "value.weight"]]).T),
                qkv_b=np.concatenate([w[a + "query.bias"] * scale, w[a + "key.bias"], w[a + "value.bias"]]),
                out_w=np.ascontiguousarray(w[p + "attention.output.dense.weight"].T),
                out_b=w[p + "attention.output.dense.bias"],
                ln1=(w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"]),
                ff_in_w=np.ascontiguousarray(w[p + "intermediate.dense.weight"].T),
                ff_in_b=w[p + "intermediate.dense.bias"],
                ff_out_w=np.ascontiguousarray(w[p + "output.dense.weight"].T),
                ff_out_b=w[p + "output.dense.bias"],
                ln2=(w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"]),
            ))

    def encode(self, texts: Sequence[str]) -> Embeddings:
        # Mini-batches of `batch_size` texts bound memory (a 2048-text request is 64 of them).
        encodings = self.tokenizer.encode_batch(list(texts))
        counts = np.array([len(e.ids) for e in encodings], dtype=np.int32)
        vectors = np.empty((len(texts), self.dimensions), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            chunk = encodings[start:start + self.batch_size]
            vectors[start:start + len(chunk)] = self._forward([e.ids for e in chunk])
        return Embeddings(vectors=vectors, token_counts=counts)

    def _forward(self, sequences: list[list[int]]) -> np.ndarray:
        """Pooled (and normalised) embeddings of a few token sequences.

        The sequences are packed end to end rather than padded: every layer but attention works
        token by token, and attention runs per sequence over its own tokens. That is what a padded
        batch with an attention mask computes, without spending any work on padding — and a text's
        embedding cannot depend on what it is batched with.
        """
        hidden, heads = self.dimensions, self._heads
        lengths = [len(s) for s in sequences]
        bounds = np.cumsum([0, *lengths])
        ids = np.concatenate(sequences)
        positions = np.concatenate([np.arange(n) for n in lengths])
        x = _layer_norm(self._word[ids] + self._position[positions] + self._token_type, *self._ln, self._eps)
        for layer in self._layers:
            qkv = x @ layer.qkv_w + layer.qkv_b
            context = np.empty_like(x)
            for start, end in zip(bounds[:-1], bounds[1:]):
                q, k, v = qkv[start:end].reshape(end - start, 3, heads, hidden // heads).transpose(1, 2, 0, 3)
                scores = q @ k.transpose(0, 2, 1)  # (heads, n, n); the query is pre-scaled
                scores -= scores.max(axis=-1, keepdims=True)
                np.exp(scores, out=scores)
                scores /= scores.sum(axis=-1, keepdims=True)
                context[start:end] = (scores @ v).transpose(1, 0, 2).reshape(end - start, hidden)
            x = _layer_norm(x + context @ layer.out_w + layer.out_b, *layer.ln1, self._eps)
            x = _layer_norm(x + self._feed_forward(layer, x), *layer.ln2, self._eps)
        pooled = np.add.reduceat(x, bounds[:-1], axis=0) / np.array(lengths, dtype=np.float32)[:, None]
        if self.normalize:  # torch.nn.functional.normalize: x / max(||x||, 1e-12)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), np.float32(1e-12))
        return pooled

    @staticmethod
    def _feed_forward(layer: _Layer, x: np.ndarray, rows: int = 256) -> np.ndarray:
        """In blocks of rows, so the 4x-wide intermediate stays in cache while GELU runs over it
        (one pass over all 8192 tokens of 32 long texts at once is memory-bound, ~1.7x slower)."""
        out = np.empty_like(x)
        for start in range(0, len(x), rows):
            inner = _gelu(x[start:start + rows] @ layer.ff_in_w + layer.ff_in_b)
            out[start:start + rows] = inner @ layer.ff_out_w + layer.ff_out_b
        return out


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: np.float32) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    variance = (centered * centered).mean(axis=-1, keepdims=True)
    return centered / np.sqrt(variance + eps) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x·Φ(x) = x/2·(1 + erf(x/√2)) — not the tanh approximation."""
    erf = _erf(x * np.float32(1 / np.sqrt(2)))
    erf += 1
    erf *= x
    erf *= np.float32(0.5)
    return erf


# Abramowitz & Stegun 7.1.26: |error| < 1.5e-7 (6e-7 once evaluated in float32), far below what
# changes an embedding — numpy has no erf ufunc, and scipy is not worth a dependency for one.
_P = np.float32(0.3275911)
_A = [np.float32(c) for c in (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)]


def _erf(x: np.ndarray) -> np.ndarray:
    a = np.abs(x)
    t = a * _P
    t += 1
    np.reciprocal(t, out=t)
    poly = t * _A[0]
    for c in _A[1:]:
        poly += c
        poly *= t
    np.square(a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    poly *= a  # poly · exp(-x²) = erfc(|x|)
    np.subtract(1, poly, out=poly)
    return np.copysign(poly, x, out=poly)


def _json(path: Path) -> dict | list:
    return json.loads(path.read_text())
