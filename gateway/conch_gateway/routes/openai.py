"""OpenAI-compatible `/v1` routes (models are in routes/models.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..dependencies import services
from ..protocol.openai import (
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    EmbeddingList,
    EmbeddingRequest,
)
from ..responses import typed_json
from ..sse import event_stream

router = APIRouter(tags=["openai"])

_STREAM_DOC = {200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE chunks when stream is true"}}


@router.post("/v1/chat/completions", response_model=ChatCompletion, responses=_STREAM_DOC,
             summary="Chat completion (OpenAI-compatible; streams with stream: true)")
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    service = services(request).openai
    if body.stream:
        return event_stream(await service.chat_stream(body))
    return typed_json(await service.chat(body))


@router.post("/v1/completions", response_model=Completion, responses=_STREAM_DOC,
             summary="Text completion of a raw prompt (OpenAI-compatible; streams with stream: true)")
async def completions(body: CompletionRequest, request: Request) -> Response:
    service = services(request).openai
    if body.stream:
        return event_stream(await service.complete_stream(body))
    return typed_json(await service.complete(body))


@router.post("/v1/embeddings", response_model=EmbeddingList, summary="Embeddings (OpenAI-compatible)")
async def embeddings(body: EmbeddingRequest, request: Request) -> Response:
    return typed_json(await services(request).openai.embed(body))
