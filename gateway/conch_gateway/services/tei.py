"""TEI's `/embed` (and HF Inference's feature-extraction pipeline) over the embedding service."""

from __future__ import annotations

import numpy as np

from .. import errors
from ..protocol.tei import EmbedRequest
from ..registry.base import ModelRegistry
from .embeddings import EmbeddingService


class TEIService:
    def __init__(self, registry: ModelRegistry, embeddings: EmbeddingService):
        self._registry = registry
        self._embeddings = embeddings

    async def embed(self, request: EmbedRequest, model_id: str | None = None) -> list[list[float]]:
        texts = [request.inputs] if isinstance(request.inputs, str) else list(request.inputs)
        if not texts or any(not t for t in texts):
            raise errors.invalid_request("inputs must be a non-empty text or a list of non-empty texts", param="inputs")
        model = self._registry.resolve_default(model_id or request.model, None, param="model", embeddings=True)
        vectors, _ = await self._embeddings.embed(model, texts)
        if request.dimensions is not None and request.dimensions != vectors.shape[1]:
            raise errors.unsupported_parameter("dimensions", f"model '{model.id}' returns {vectors.shape[1]} "
                                               "dimensions and cannot shorten them; omit dimensions")
        if request.normalize:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.where(norms == 0, 1, norms)
        return vectors.tolist()
