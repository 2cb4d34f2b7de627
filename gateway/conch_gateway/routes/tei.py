"""Hugging Face embedding routes: TEI's `POST /embed` and HF Inference's feature-extraction
pipeline, so `InferenceClient(base_url=…/embed).feature_extraction(text)` works."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..dependencies import services
from ..protocol.tei import EmbedRequest, EmbedResponse
from ..responses import JSONBytes

router = APIRouter(tags=["tei"])


@router.post("/embed", response_model=EmbedResponse, summary="Embeddings (Text Embeddings Inference-compatible)")
async def embed(body: EmbedRequest, request: Request) -> Response:
    return JSONBytes(await services(request).tei.embed(body))


@router.post("/models/{model_id}/pipeline/feature-extraction", response_model=EmbedResponse,
             summary="Embeddings of one model (Hugging Face Inference's feature-extraction pipeline)")
async def feature_extraction(model_id: str, body: EmbedRequest, request: Request) -> Response:
    return JSONBytes(await services(request).tei.embed(body, model_id))
