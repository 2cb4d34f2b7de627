"""Embeddings from a Triton model speaking Conch's embedding interface: `text_input` (strings) →
`embedding` (FP32, one row per text) and `num_input_tokens` (per text)."""

from __future__ import annotations

import numpy as np

from .. import errors
from ..auth.caller import authorize
from ..backends.base import BackendFailed, BackendTimeout, BackendUnavailable
from ..backends.triton import TritonClient
from ..registry.base import ServedModel
from ..limits import usage
from .generation import TimeLimit, classify_failure

MAX_INPUTS = 2048  # OpenAI's limit per request
SECONDS_PER_TEXT = 0.1  # a 256-token text takes ~0.1 s on 2 CPU cores; the time limit grows with the batch


class EmbeddingService:
    def __init__(self, triton: TritonClient, time_limit: TimeLimit):
        self._triton = triton
        self._base_timeout = time_limit.base_s

    async def embed(self, model: ServedModel, texts: list[str]) -> tuple[np.ndarray, int]:
        """The vectors, one row per text, and the tokens read."""
        if len(texts) > MAX_INPUTS:
            raise errors.invalid_request(f"at most {MAX_INPUTS} inputs per request, got {len(texts)}", param="input")
        await authorize(model)
        inputs = [{"name": "text_input", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]
        try:
            timeout = max(self._base_timeout, len(texts) * SECONDS_PER_TEXT)
            outputs = await self._triton.infer(model.endpoint, model.triton_model, inputs, timeout)
        except BackendUnavailable as exc:
            raise errors.downstream_failed(model.id, str(exc)) from exc
        except BackendTimeout as exc:
            raise errors.inference_timeout(model.id, exc.seconds) from exc
        except BackendFailed as exc:
            raise classify_failure(model.id, exc) from exc
        embedding, tokens = outputs.get("embedding"), outputs.get("num_input_tokens")
        if embedding is None or len(embedding.get("shape", ())) != 2 or embedding["shape"][0] != len(texts):
            raise errors.triton_server_error(model.id, "the model's answer has no embedding per input")
        vectors = np.asarray(embedding["data"], dtype=np.float32).reshape(embedding["shape"])
        read = int(sum(tokens["data"])) if tokens else 0
        usage.charge(read)
        return vectors, read
