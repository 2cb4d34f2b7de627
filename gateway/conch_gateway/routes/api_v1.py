"""The `/api/v1` API: generate, its token stream, batches, and the model list."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..auth.caller import usable
from ..dependencies import services
from ..protocol.api_v1 import ApiV1GenerateRequest, ApiV1GenerateResponse, ApiV1ModelList, BatchRequest, BatchResponse
from ..responses import typed_json
from ..sse import event_stream

router = APIRouter(prefix="/api/v1", tags=["api/v1"])

_STREAM_DOC = {200: {"content": {"text/event-stream": {}}, "description": 'SSE events {"token", "finished"}'}}


@router.post("/generate", response_model=ApiV1GenerateResponse, responses=_STREAM_DOC,
             summary="Generate text: {text, usage, latency}; streams with stream: true")
async def generate(body: ApiV1GenerateRequest, request: Request) -> Response:
    service = services(request).api_v1
    if body.stream:
        return event_stream(await service.stream(body))
    return typed_json(await service.generate(body))


@router.post("/generate/stream", responses=_STREAM_DOC, summary='Token stream: SSE {"token", "finished"}')
async def generate_stream(body: ApiV1GenerateRequest, request: Request) -> Response:
    return event_stream(await services(request).api_v1.stream(body))


@router.post("/batch/generate", response_model=BatchResponse,
             summary="Several requests at once; results in order, errors per item")
async def batch_generate(body: BatchRequest, request: Request) -> Response:
    return typed_json(await services(request).api_v1.batch(body))


@router.get("/models", response_model=ApiV1ModelList, summary="Models, in the /api/v1 shape")
async def models(request: Request) -> Response:
    answer = services(request).api_v1.models()
    allowed = {m.id for m in await usable(services(request).registry.all())}
    answer.models = [m for m in answer.models if m.name in allowed]  # only what the caller may use
    return typed_json(answer)
